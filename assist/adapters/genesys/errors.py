"""Errors raised by the Genesys adapter.

    GenesysError
    ├── GenesysTransportError     could not talk to the server (connect error, timeout)
    ├── GenesysAuthError          credentials refused by the token endpoint, or 401 after a refetch
    ├── GenesysRateLimitedError   429 still there after the retry budget, or Retry-After too long
    ├── GenesysCircuitOpenError   the provider's circuit breaker is open: nothing was sent
    └── GenesysApiError           the server answered with another error status (`status_code`)

Transport, rate-limit, circuit-open and 5xx errors are "try later" (`retry_in_s`, when set,
says how long to wait); auth and 4xx API errors are final.
"""

from __future__ import annotations


class GenesysError(Exception):
    retryable = False
    #: How long the server (Retry-After) or the circuit breaker asks us to wait, when known.
    retry_in_s: float | None = None


class GenesysTransportError(GenesysError):
    retryable = True


class GenesysAuthError(GenesysError):
    pass


class GenesysRateLimitedError(GenesysError):
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.retry_in_s = retry_after_s


class GenesysCircuitOpenError(GenesysError):
    """Raised without touching the network while a provider's circuit is open (or half-open
    with its one probe call already in flight), and by the call whose failure opened it.

    `nothing_sent` is True when the call was turned away before any of its HTTP attempts."""

    retryable = True

    def __init__(
        self, message: str, *, circuit: str, retry_in_s: float, nothing_sent: bool = False
    ) -> None:
        super().__init__(message)
        self.circuit = circuit
        self.retry_in_s = retry_in_s
        self.nothing_sent = nothing_sent


class GenesysApiError(GenesysError):
    def __init__(
        self, message: str, *, status_code: int, correlation_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.correlation_id = correlation_id
        self.retryable = status_code >= 500


def raise_for_status(
    status: int,
    correlation_id: str | None,
    *,
    what: str,
    accepted: frozenset[int] | range = range(200, 300),
) -> None:
    """The one reading of a Genesys call's answer after `TokenProvider.send`: a 401 (even after
    a fresh token) is `GenesysAuthError`, any other status outside `accepted` is
    `GenesysApiError`."""
    if status == 401:
        raise GenesysAuthError(f"{what} refused a freshly fetched token")
    if status not in accepted:
        raise GenesysApiError(
            f"{what} answered {status}", status_code=status, correlation_id=correlation_id
        )


# --- Notifications API (the stream process) ---------------------------------------------
#
#   GenesysError
#   └── NotificationsError        a notifications channel or subscription problem
#       ├── ChannelGoneError      the channel is unknown, expired or evicted (404): open a new one
#       ├── TopicLimitError       the 1,000-topics-per-channel limit was hit (400)
#       └── ChannelLimitError     every allowed channel is full: the topic is refused


class NotificationsError(GenesysError):
    pass


class ChannelGoneError(NotificationsError):
    retryable = True


class TopicLimitError(NotificationsError):
    pass


class ChannelLimitError(NotificationsError):
    pass
