"""Signed callback delivery for accepted knowledge queries.

Each accepted query gets a `processing` and then a `completed` callback, signed the
Standard Webhooks way. A message that is not answered with a 2xx is redelivered on the
configured schedule, keeping its `webhook-id` but with a fresh timestamp and signature, as a
real Standard Webhooks sender does; after the schedule is exhausted the emulator gives up
and records that.

Waits are not slept in worker threads: a single timer thread keeps a heap of due steps and
hands them to a small thread pool that only does the HTTP sends. That way thousands of
queries waiting out their callback delay or a retry cost no threads, which matters when the
emulator sits behind a load test. The steps of one query are chained (each step schedules
the next), so its callbacks always go out in order and never concurrently.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from emulator.config import EmulatorConfig
from emulator.knowledge import Suggestion
from emulator.state import CallbackRecord, EmulatorState

log = logging.getLogger(__name__)

USER_AGENT = "genesys-assist-emulator"


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class _Message:
    webhook_id: str
    status: str
    #: The exact JSON text that is signed and sent.
    body: str


@dataclass
class _Delivery:
    """Progress through the callbacks of one provider request (one step in flight at most)."""

    provider_request_id: str
    url: str
    generation: int
    messages: list[_Message]
    extra_copies: int
    index: int = 0  # which message is being delivered
    copy: int = 0  # 0 = the original delivery, k = the k-th extra copy
    failures: int = 0  # failed attempts of the current copy, indexes the retry schedule
    attempt: int = 0  # sends of the current message over all copies and retries


def callback_body(provider_request_id: str, status: str, suggestions: Sequence[Suggestion]) -> str:
    payload: dict[str, Any] = {
        "id": provider_request_id,
        "status": status,
        "suggestions": list(suggestions),
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class CallbackDispatcher:
    """Schedules, signs, sends and redelivers callbacks; `start` before use, `stop` after."""

    def __init__(self, config: EmulatorConfig, state: EmulatorState, *, workers: int = 32) -> None:
        self._state = state
        self._webhook = Webhook(config.callback_secret)
        self._retry_s = config.delivery_retry_s
        self._client = httpx.Client(
            timeout=config.delivery_timeout_s, headers={"User-Agent": USER_AGENT}
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="emulator-callback")
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()  # heap tie-breaker: deliveries are not comparable
        self._stopped = False
        self._timer = threading.Thread(
            target=self._run, name="emulator-callback-timer", daemon=True
        )

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        """Drop pending callbacks, wait for in-flight sends, release the HTTP client."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._due.clear()
            self._cond.notify_all()
        if self._timer.is_alive():
            self._timer.join()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def schedule(
        self,
        provider_request_id: str,
        url: str,
        suggestions: Sequence[Suggestion],
        *,
        delay_s: float,
        extra_copies: int,
    ) -> None:
        """Queue the `processing` and `completed` callbacks of one accepted query."""
        messages = [
            _Message(new_webhook_id(), status, callback_body(provider_request_id, status, items))
            for status, items in (("processing", []), ("completed", suggestions))
        ]
        delivery = _Delivery(
            provider_request_id=provider_request_id,
            url=url,
            generation=self._state.generation,
            messages=messages,
            extra_copies=extra_copies,
        )
        self._at(time.monotonic() + delay_s, delivery)

    def _at(self, due: float, delivery: _Delivery) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._due, (due, next(self._seq), delivery))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._due:
                        wait = self._due[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                _, _, delivery = heapq.heappop(self._due)
            try:
                self._executor.submit(self._step, delivery)
            except RuntimeError:  # the executor was shut down under us: we are stopping
                return

    def _step(self, delivery: _Delivery) -> None:
        """Send the current message once, then schedule whatever comes next."""
        if delivery.generation != self._state.generation:
            log.info("dropping callbacks of %s: emulator was reset", delivery.provider_request_id)
            return
        message = delivery.messages[delivery.index]
        delivery.attempt += 1
        status_code, error = self._send(delivery.url, message)
        ok = status_code is not None and 200 <= status_code < 300
        retry_left = delivery.failures < len(self._retry_s)
        gave_up = not ok and not retry_left
        record: CallbackRecord = {
            "webhook_id": message.webhook_id,
            "provider_request_id": delivery.provider_request_id,
            "status": message.status,
            "attempt": delivery.attempt,
            "copy": delivery.copy,
            "response_status": status_code,
            "error": error,
            "url": delivery.url,
            "gave_up": gave_up,
        }
        self._state.record_callback(record, delivery.generation)
        log.info(
            "callback %s %s %s attempt=%d copy=%d -> %s%s",
            delivery.provider_request_id,
            message.status,
            message.webhook_id,
            delivery.attempt,
            delivery.copy,
            status_code if status_code is not None else error,
            " (giving up)" if gave_up else "",
        )

        if not ok and retry_left:
            wait = self._retry_s[delivery.failures]
            delivery.failures += 1
            self._at(time.monotonic() + wait, delivery)
            return
        # This copy is finished, delivered or abandoned: on to the next copy or message.
        delivery.failures = 0
        if delivery.copy < delivery.extra_copies:
            delivery.copy += 1
        else:
            delivery.index += 1
            delivery.copy = 0
            delivery.attempt = 0
            if delivery.index >= len(delivery.messages):
                return
        self._at(time.monotonic(), delivery)

    def _send(self, url: str, message: _Message) -> tuple[int | None, str | None]:
        """POST one signed message; returns (status code, None) or (None, error text)."""
        # Every send is signed afresh: receivers reject stale timestamps, and a redelivery
        # that reused the first signature could never get through after a long outage.
        timestamp = int(time.time())
        signature = self._webhook.sign(
            message.webhook_id, datetime.fromtimestamp(timestamp, UTC), message.body
        )
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            response = self._client.post(url, content=message.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # e.g. httpx.InvalidURL; a fake must keep delivering others
            log.exception("callback to %s failed unexpectedly", url)
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None
