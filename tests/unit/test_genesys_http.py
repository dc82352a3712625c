"""ResilientHttp: the Genesys retry rules, against an httpx.MockTransport and a fake sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest

from assist.adapters.genesys.errors import (
    GenesysApiError,
    GenesysRateLimitedError,
    GenesysTransportError,
)
from assist.adapters.genesys.http import ResilientHttp

URL = "https://api.test/api/v2/things"
Step = httpx.Response | type[httpx.TransportError]


class Server:
    """Answers each call with the next scripted step (a response or a transport error)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps: Iterator[Step] = iter(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self._steps)
        if isinstance(step, httpx.Response):
            return step
        raise step("scripted failure", request=request)


def status(code: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(code, headers=headers, json={"code": code})


def make_http(
    steps: Sequence[Step],
    *,
    max_attempts: int = 5,
    max_retry_after_s: float = 180.0,
    jitter: Callable[[float], float] = lambda wait: 0.0,
) -> tuple[ResilientHttp, Server, list[float]]:
    server = Server(steps)
    waits: list[float] = []
    http = ResilientHttp(
        httpx.Client(transport=httpx.MockTransport(server)),
        max_attempts=max_attempts,
        max_retry_after_s=max_retry_after_s,
        sleep=waits.append,
        jitter=jitter,
    )
    return http, server, waits


@pytest.mark.parametrize("code", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_until_success(code: int) -> None:
    http, server, waits = make_http([status(code), status(code), status(200)])
    response = http.send("GET", URL)
    assert response.status_code == 200
    assert len(server.requests) == 3
    assert waits == [3.0, 3.0]


def test_the_request_is_sent_again_unchanged() -> None:
    http, server, _ = make_http([status(503), status(202)])
    http.send("POST", URL, json={"a": 1}, headers={"Authorization": "Bearer t"})
    first, second = server.requests
    assert (first.method, str(first.url), first.content) == (
        second.method,
        str(second.url),
        second.content,
    )
    assert second.headers["Authorization"] == "Bearer t"


def test_retry_after_is_honoured() -> None:
    http, _, waits = make_http([status(429, "2"), status(503, "7.5"), status(429), status(200)])
    assert http.send("GET", URL).status_code == 200
    assert waits == [2.0, 7.5, 3.0]


def test_retry_after_zero_means_retry_at_once() -> None:
    # "wait Retry-After seconds when present, else 3 s": a present 0 is not an absent header.
    http, _, waits = make_http([status(429, "0"), status(200)])
    http.send("GET", URL)
    assert waits == [0.0]


def test_an_unparseable_retry_after_falls_back_to_three_seconds() -> None:
    http, _, waits = make_http([status(429, "soon"), status(200)])
    http.send("GET", URL)
    assert waits == [3.0]


def test_jitter_is_added_to_the_wait() -> None:
    http, _, waits = make_http([status(429, "4"), status(200)], jitter=lambda wait: wait * 0.1)
    http.send("GET", URL)
    assert waits == [pytest.approx(4.4)]


def test_default_jitter_stays_within_ten_percent() -> None:
    server = Server([status(429, "10")] * 20 + [status(200)])
    waits: list[float] = []
    http = ResilientHttp(
        httpx.Client(transport=httpx.MockTransport(server)),
        max_attempts=25,
        max_retry_after_s=180,
        sleep=waits.append,
    )
    http.send("GET", URL)
    assert len(waits) == 20
    assert all(10.0 <= wait <= 11.0 for wait in waits)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 500])
def test_other_statuses_are_returned_at_once(code: int) -> None:
    http, server, waits = make_http([status(code), status(200)])
    assert http.send("GET", URL).status_code == code
    assert len(server.requests) == 1
    assert waits == []


def test_a_retry_after_longer_than_the_bound_gives_up_at_once() -> None:
    http, server, waits = make_http([status(429, "181"), status(200)], max_retry_after_s=180)
    with pytest.raises(GenesysRateLimitedError) as caught:
        http.send("GET", URL)
    assert caught.value.retry_after_s == 181.0
    assert caught.value.retryable
    assert len(server.requests) == 1
    assert waits == []


def test_a_long_retry_after_on_503_gives_up_at_once_too() -> None:
    http, server, waits = make_http([status(503, "3600"), status(200)], max_retry_after_s=180)
    with pytest.raises(GenesysApiError) as caught:
        http.send("GET", URL)
    assert caught.value.status_code == 503
    assert len(server.requests) == 1
    assert waits == []


def test_a_retry_after_equal_to_the_bound_is_waited_for() -> None:
    http, _, waits = make_http([status(429, "180"), status(200)], max_retry_after_s=180)
    assert http.send("GET", URL).status_code == 200
    assert waits == [180.0]


def test_429_after_max_attempts_is_rate_limited() -> None:
    http, server, waits = make_http([status(429, "1")] * 10, max_attempts=3)
    with pytest.raises(GenesysRateLimitedError) as caught:
        http.send("GET", URL)
    assert len(server.requests) == 3
    assert waits == [1.0, 1.0]
    assert caught.value.retry_after_s == 1.0


def test_503_after_max_attempts_is_an_api_error() -> None:
    responses = [
        httpx.Response(503, headers={"ININ-Correlation-Id": f"corr-{i}"}) for i in range(10)
    ]
    http, server, _ = make_http(responses, max_attempts=4)
    with pytest.raises(GenesysApiError) as caught:
        http.send("GET", URL)
    assert len(server.requests) == 4
    assert caught.value.status_code == 503
    assert caught.value.retryable
    assert caught.value.correlation_id == "corr-3"  # from the last answer


def test_one_attempt_means_no_retry() -> None:
    http, server, waits = make_http([status(502), status(200)], max_attempts=1)
    with pytest.raises(GenesysApiError):
        http.send("GET", URL)
    assert len(server.requests) == 1
    assert waits == []


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
def test_connection_failures_are_retried(error: type[httpx.TransportError]) -> None:
    http, server, waits = make_http([error, error, status(200)])
    assert http.send("GET", URL).status_code == 200
    assert len(server.requests) == 3
    assert waits == [3.0, 3.0]


def test_a_persistent_connection_failure_raises_transport_error() -> None:
    http, server, _ = make_http([httpx.ConnectError] * 10, max_attempts=3)
    with pytest.raises(GenesysTransportError) as caught:
        http.send("GET", URL)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.retryable
    assert len(server.requests) == 3


def test_a_read_timeout_is_not_retried() -> None:
    # The request may have reached the server: sending it again could act twice.
    http, server, waits = make_http([httpx.ReadTimeout, status(200)])
    with pytest.raises(GenesysTransportError):
        http.send("POST", URL, json={})
    assert len(server.requests) == 1
    assert waits == []
