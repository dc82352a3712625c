"""Delivery of analytics records to the configured endpoint, in batches, from the Redis outbox.

Runs as the `deliver_analytics` job. Under a lock (so two jobs never send the same range),
it sends every record after the delivery cursor in batches and moves the cursor after each
accepted batch. A job that finds the lock taken does not wait for it (that held a second
worker idle for as long as the first one delivered, and suggestion jobs queued behind both:
benchmarks/README.md, Copilot): it schedules a successor a second later and ends, leaving the
flag set, so whatever the holder has not sent yet is sent by the successor.

It clears the "delivery scheduled" flag only once the outbox is empty, then
looks once more, so an event recorded while the flag was still set is never stranded.
A failed batch raises, leaving cursor and flag as they were, and RQ retries the job.
"""

from __future__ import annotations

from datetime import timedelta

from assist.bootstrap import Services
from assist.core.models import utcnow
from assist.logconfig import get_logger

log = get_logger(__name__)
BATCH_SIZE = 500
LOCK_TIMEOUT_S = 60
RETRY_WHEN_BUSY = timedelta(seconds=1)


def deliver_pending(services: Services) -> int:
    """Send every undelivered record; returns how many were sent."""
    sink = services.analytics_sink
    if sink is None:
        return 0
    store = services.analytics
    sent = 0
    lock = store.delivery_lock(LOCK_TIMEOUT_S)
    if not lock.acquire(blocking=False):
        # With the retry schedule of its own: a successor that fails must not leave the
        # flag set and nobody retrying until it lapses.
        services.background.enqueue_at(
            utcnow() + RETRY_WHEN_BUSY,
            "deliver_analytics",
            retry=services.recorder.delivery_retry,
        )
        log.info("analytics.delivery_busy", retry_in_s=RETRY_WHEN_BUSY.total_seconds())
        return 0
    try:
        while True:
            batch = store.undelivered(BATCH_SIZE)
            if not batch:
                store.clear_delivery_flag()
                # Anything recorded before the flag went away is picked up here; anything
                # after it schedules a new job of its own.
                batch = store.undelivered(BATCH_SIZE)
                if not batch:
                    break
            sink.send([record for _, record in batch])
            store.mark_delivered(batch[-1][0])
            sent += len(batch)
    finally:
        lock.release()
    log.info("analytics.delivered", records=sent)
    return sent
