"""HTTP to Genesys Cloud (and providers speaking its conventions), with its retry rules.

The rules are those of the official SDKs (reference/genesys-cloud.md §5), applied with
tenacity rather than a hand-rolled loop:

- retry only 429, 502, 503 and 504 (and connection failures, where nothing reached the server);
- wait `Retry-After` seconds when present, else 3 s, plus up to 10% jitter so a fleet of
  workers does not retry in lockstep;
- give up when `Retry-After` exceeds the configured bound (180 s by default: a quota-style
  limit is not worth waiting for in a live call), or after `max_attempts`.

A call that names a `circuit` goes through that provider's circuit breaker
(`assist.adapters.genesys.circuit`, state shared in Redis): every attempt asks it first and
reports its outcome, and an open circuit ends the call at once with `GenesysCircuitOpenError`,
before the network, including the remaining retries of a call whose own failure opened it.
So one call makes at most `max_attempts` HTTP attempts, and none while its circuit is open.

Every response's `inin-ratelimit-*` and `ININ-Correlation-Id` headers are logged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result

from assist.adapters.genesys.circuit import CircuitBreaker, Permit
from assist.adapters.genesys.errors import (
    GenesysApiError,
    GenesysCircuitOpenError,
    GenesysRateLimitedError,
    GenesysTransportError,
)
from assist.logconfig import get_logger

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
DEFAULT_RETRY_AFTER_S = 3.0
_RATE_LIMIT_HEADERS = ("inin-ratelimit-count", "inin-ratelimit-allowed", "inin-ratelimit-reset")

log = get_logger(__name__)


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ResilientHttp:
    """Sends one logical request, retrying as Genesys asks; returns the final response."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        max_attempts: int,
        max_retry_after_s: float,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float], float] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.max_retry_after_s = max_retry_after_s
        self.breaker = breaker
        self._sleep = sleep
        self._jitter = jitter or (lambda wait: random.uniform(0, wait * 0.1))

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        wait = DEFAULT_RETRY_AFTER_S
        if outcome is not None and not outcome.failed:
            retry_after = retry_after_seconds(outcome.result())
            if retry_after is not None:  # "Retry-After: 0" means now, not the default
                wait = retry_after
        return wait + self._jitter(wait)

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            return True
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            retry_after = retry_after_seconds(outcome.result())
            return retry_after is not None and retry_after > self.max_retry_after_s
        return False

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        status = None
        if outcome is not None and not outcome.failed:
            status = outcome.result().status_code
        log.warning(
            "genesys.retry",
            attempt=state.attempt_number,
            status=status,
            error=repr(outcome.exception()) if outcome is not None and outcome.failed else None,
            wait_s=round(state.upcoming_sleep, 3),
        )

    def send(
        self, method: str, url: str, *, circuit: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send with retries; raise `GenesysTransportError` or `GenesysRateLimitedError` on give-up,
        `GenesysCircuitOpenError` when `circuit` is (or becomes) open.

        Other error statuses are returned for the caller to interpret.
        """
        retrying = Retrying(
            retry=(
                retry_if_result(lambda r: r.status_code in RETRYABLE_STATUS)
                | retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout))
            ),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        try:
            response: httpx.Response | None = retrying(
                self._send_once, method, url, circuit, **kwargs
            )
        except httpx.TransportError as exc:
            raise GenesysTransportError(f"{method} {url}: {exc!r}") from exc
        except GenesysCircuitOpenError as exc:
            if retrying.statistics.get("attempt_number", 1) > 1:
                exc.nothing_sent = False  # turned away on a retry: earlier attempts were sent
            raise
        if response is None:  # pragma: no cover - tenacity always has an outcome here
            raise GenesysTransportError(f"{method} {url}: no response")
        if response.status_code == 429:
            raise GenesysRateLimitedError(
                f"{method} {url}: still rate limited after retries",
                retry_after_s=retry_after_seconds(response),
            )
        if response.status_code in RETRYABLE_STATUS:
            error = GenesysApiError(
                f"{method} {url}: {response.status_code} after retries",
                status_code=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            )
            error.retry_in_s = retry_after_seconds(response)
            raise error
        return response

    def _send_once(
        self, method: str, url: str, circuit: str | None, **kwargs: Any
    ) -> httpx.Response:
        breaker = self.breaker if circuit is not None else None
        permit = breaker.acquire(circuit) if breaker is not None and circuit is not None else None
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            if breaker is not None and permit is not None:
                self._failed(breaker, permit, None, f"{method} {url}: {exc!r}", exc)
            raise
        limits = {
            name.removeprefix("inin-ratelimit-"): response.headers[name]
            for name in _RATE_LIMIT_HEADERS
            if name in response.headers
        }
        log.debug(
            "genesys.response",
            method=method,
            path=response.request.url.path,
            status=response.status_code,
            correlation_id=response.headers.get("ININ-Correlation-Id"),
            ratelimit=limits or None,
        )
        if breaker is None or permit is None:
            return response
        if response.status_code >= 500:
            what = f"{method} {url}: {response.status_code}"
            self._failed(breaker, permit, retry_after_seconds(response), what, None)
        elif response.status_code == 429:
            breaker.record_neutral(permit)
        else:
            breaker.record_success(permit)
        return response

    @staticmethod
    def _failed(
        breaker: CircuitBreaker,
        permit: Permit,
        retry_after_s: float | None,
        what: str,
        cause: BaseException | None,
    ) -> None:
        """Report a failed attempt; if its circuit is open now, end the call here."""
        open_for = breaker.record_failure(permit, retry_after_s=retry_after_s)
        if open_for > 0:
            raise GenesysCircuitOpenError(
                f"{what}; circuit {permit.circuit} open for {open_for:.1f} s",
                circuit=permit.circuit,
                retry_in_s=open_for,
            ) from cause
