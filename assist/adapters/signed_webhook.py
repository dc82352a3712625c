"""Outbound webhooks signed with Standard Webhooks, for the receivers we feed (utterance sync,
training platform).

`webhook-id` is the caller's stable message id, so a receiver deduplicates retries; the
signature covers `{id}.{timestamp}.{body}` (`standardwebhooks.Webhook.sign`). An empty secret
sends the message unsigned (for receivers that authenticate otherwise).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook


class WebhookDeliveryError(Exception):
    """The receiver did not take the message; raised so RQ retries the job."""


def post_signed(
    client: httpx.Client, url: str, *, secret: str, message_id: str, payload: Any
) -> httpx.Response:
    """POST `payload` as JSON; raise `WebhookDeliveryError` unless the answer is 2xx."""
    body = json.dumps(payload, separators=(",", ":"))
    headers = {"Content-Type": "application/json", "webhook-id": message_id}
    if secret:
        now = datetime.now(UTC)
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        headers["webhook-signature"] = Webhook(secret).sign(message_id, now, body)
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise WebhookDeliveryError(f"{url} unreachable: {exc!r}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookDeliveryError(f"{url} answered {response.status_code}")
    return response
