"""`GET /v1/conversations/{conversation_id}/events`: the live suggestion feed (Server-Sent Events).

Read from the conversation's Redis Stream, so the feed is resumable and loses nothing:

- every event carries its stream id as the SSE `id`; a client reconnecting with
  `Last-Event-ID` gets exactly what came after it (a malformed one means a fresh start);
- a client without `Last-Event-ID` gets the whole retained feed first, so suggestions ranked
  before the desk opened are not lost;
- a comment every `ASSIST_FEED_KEEPALIVE_S` keeps proxies from closing an idle feed;
- a client that stops reading is dropped after `ASSIST_FEED_SEND_TIMEOUT_S`: the generator
  produces the next event only after the previous one was written, so nothing piles up;
- a feed ends after `ASSIST_FEED_MAX_CONNECTION_S`; EventSource reconnects on its own.

EventSource cannot send headers, so the desk token may come as `access_token` in the query
string; only the path is ever logged.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

from flask import Blueprint, Response, request

from assist.errors import InvalidInputError
from assist.logconfig import get_logger
from assist.stores.redis_client import REDIS_UNAVAILABLE_ERRORS
from webapp.context import bind
from webapp.inputs import require_desk_token

bp = Blueprint("events", __name__)
log = get_logger(__name__)

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
RECONNECT_MS = 2000


def sse_event(event_id: str, event_type: str, data: object) -> str:
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event_type}\ndata: {payload}\n\n"


def _resume_point() -> str:
    last = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or ""
    return last if _STREAM_ID.match(last) else "0-0"


def _limit_send_time(timeout_s: float) -> None:
    """Make a stalled client's socket raise instead of holding the feed forever."""
    client = request.environ.get("gunicorn.socket")
    if isinstance(client, socket.socket):
        client.settimeout(timeout_s)


@bp.get("/v1/conversations/<conversation_id>/events")
def conversation_events(conversation_id: str) -> Response:
    svc = require_desk_token(allow_query_token=True)
    if not _CONVERSATION_ID.match(conversation_id):
        raise InvalidInputError("conversation_id has invalid characters", code="invalid_id")
    bind(conversation_id=conversation_id)
    settings = svc.settings
    store = svc.conversations
    cursor = _resume_point()
    _limit_send_time(settings.feed_send_timeout_s)

    def stream() -> Iterator[str]:
        nonlocal cursor
        opened = time.monotonic()
        sent = 0
        reason = "max_duration"
        # The first bytes flush the headers at once, so the client knows it is connected.
        yield f"retry: {RECONNECT_MS}\n: connected\n\n"
        try:
            while time.monotonic() - opened < settings.feed_max_connection_s:
                entries = store.wait_feed(
                    conversation_id, cursor, block_ms=settings.feed_keepalive_s * 1000
                )
                if not entries:
                    yield ": keep-alive\n\n"
                    continue
                for entry_id, event in entries:
                    yield sse_event(entry_id, str(event.get("type", "message")), event)
                    cursor = entry_id
                    sent += 1
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # End the stream; the client reconnects with Last-Event-ID and loses nothing.
            reason = "redis_unavailable"
            log.warning("feed.redis_unavailable", conversation_id=conversation_id, error=str(exc))
        except GeneratorExit:
            # The server could not write: the client left, or stopped reading for longer
            # than the send timeout.
            reason = "client_gone"
            raise
        finally:
            log.info(
                "feed.closed",
                conversation_id=conversation_id,
                reason=reason,
                events_sent=sent,
                duration_s=round(time.monotonic() - opened, 1),
            )

    return Response(
        stream(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
