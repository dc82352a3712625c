"""Delivery of analytics records to the configured HTTP endpoint (ASSIST_ANALYTICS_URL)."""

from __future__ import annotations

from typing import Any

import httpx


class AnalyticsDeliveryError(Exception):
    """The endpoint did not take the record; the job raises it so RQ retries."""


class AnalyticsSink:
    def __init__(self, client: httpx.Client, url: str, token: str = "") -> None:
        self._client = client
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def send(self, records: list[dict[str, Any]]) -> None:
        """POST a JSON array of records; raise `AnalyticsDeliveryError` unless it is taken."""
        try:
            response = self._client.post(self._url, json=records, headers=self._headers)
        except httpx.TransportError as exc:
            raise AnalyticsDeliveryError(f"analytics endpoint unreachable: {exc!r}") from exc
        if response.status_code >= 300:
            raise AnalyticsDeliveryError(f"analytics endpoint answered {response.status_code}")
