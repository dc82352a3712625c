"""The per-provider circuit breaker, through `ResilientHttp`: an httpx.MockTransport for the
provider, fakeredis for the shared state (two breakers on one FakeServer are two processes on
one Redis), a fake clock and a fake sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import fakeredis
import httpx
import pytest

from assist.adapters.genesys.circuit import HALF_OPEN_RETRY_S, CircuitBreaker, Permit
from assist.adapters.genesys.errors import (
    GenesysApiError,
    GenesysCircuitOpenError,
    GenesysRateLimitedError,
)
from assist.adapters.genesys.http import ResilientHttp
from assist.stores.keys import Keys

URL = "https://provider.test/v1/knowledge/queries"
CIRCUIT = "async-query"
Step = httpx.Response | type[httpx.TransportError]


class Server:
    """Answers each call with the next scripted step (a response or a transport error)."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self._steps: Iterator[Step] = iter(steps)
        self.requests: list[httpx.Request] = []

    def script(self, steps: Sequence[Step]) -> None:
        self._steps = iter(steps)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self._steps)
        if isinstance(step, httpx.Response):
            return step
        raise step("scripted failure", request=request)


def status(code: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(code, headers=headers, json={"code": code})


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Process:
    """One process's view: its own breaker object and HTTP client, on the shared Redis."""

    def __init__(
        self,
        redis_server: fakeredis.FakeServer,
        clock: Clock,
        *,
        failures: int = 3,
        open_s: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        self.server = Server()
        self.waits: list[float] = []
        self.redis = fakeredis.FakeRedis(server=redis_server, decode_responses=True)
        self.breaker = CircuitBreaker(
            self.redis,
            Keys("test"),
            failures=failures,
            open_s=open_s,
            probe_lease_s=11.0,
            clock=clock,
        )

        def sleep(seconds: float) -> None:  # the retry layer's wait passes on the clock too
            self.waits.append(seconds)
            clock.now += seconds

        self.http = ResilientHttp(
            httpx.Client(transport=httpx.MockTransport(self.server)),
            max_attempts=max_attempts,
            max_retry_after_s=180,
            sleep=sleep,
            jitter=lambda wait: 0.0,
            breaker=self.breaker,
        )

    def send(self, steps: Sequence[Step]) -> httpx.Response:
        self.server.script(steps)
        return self.http.send("POST", URL, circuit=CIRCUIT, json={"q": 1})

    @property
    def calls(self) -> int:
        return len(self.server.requests)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def make_process(redis_server: fakeredis.FakeServer, clock: Clock) -> Callable[..., Process]:
    return lambda **options: Process(redis_server, clock, **options)


def test_consecutive_failed_attempts_open_the_circuit_and_end_the_call(
    make_process: Callable[..., Process],
) -> None:
    process = make_process(failures=3, max_attempts=5)
    with pytest.raises(GenesysCircuitOpenError) as caught:
        process.send([status(503)] * 5)
    # The third failed attempt opened it: the call's two remaining attempts were never sent.
    assert process.calls == 3
    assert caught.value.retry_in_s == 30.0
    assert caught.value.circuit == CIRCUIT
    assert "503" in str(caught.value)
    state = process.breaker.status(CIRCUIT)
    assert (state.state, state.opens, state.failures) == ("open", 1, 0)


def test_an_open_circuit_fails_fast_without_a_call(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    process = make_process(failures=2)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(502), status(504)])
    sent = process.calls
    clock.now += 10
    for _ in range(20):
        with pytest.raises(GenesysCircuitOpenError) as caught:
            process.send([status(200)])
        assert caught.value.retry_in_s == pytest.approx(20.0)  # opened 3 s (a retry wait) in
    assert process.calls == sent
    assert process.waits == [3.0]


def test_transport_errors_count_as_failures(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=2)
    with pytest.raises(GenesysCircuitOpenError) as caught:
        process.send([httpx.ConnectError, httpx.ConnectError, status(200)])
    assert process.calls == 2
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_success_resets_the_count(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=3, max_attempts=3)
    assert process.send([status(503), status(503), status(200)]).status_code == 200
    assert process.breaker.status(CIRCUIT).failures == 0
    assert process.send([status(503), status(503), status(202)]).status_code == 202
    assert process.breaker.status(CIRCUIT).state == "closed"


def test_client_errors_are_answers_not_failures(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=2, max_attempts=1)
    with pytest.raises(GenesysApiError):
        process.send([status(503)])
    assert process.send([status(404)]).status_code == 404
    assert process.breaker.status(CIRCUIT).failures == 0


def test_a_500_counts_though_it_is_not_retried(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=2)
    assert process.send([status(500)]).status_code == 500
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(500)])
    assert process.calls == 2


def test_rate_limits_never_open_the_circuit_and_their_retry_after_is_honoured(
    make_process: Callable[..., Process],
) -> None:
    process = make_process(failures=2, max_attempts=6)
    response = process.send([status(429, "1")] * 5 + [status(200)])
    assert response.status_code == 200
    assert process.waits == [1.0] * 5
    assert process.breaker.status(CIRCUIT).state == "closed"
    with pytest.raises(GenesysRateLimitedError) as caught:
        process.send([status(429, "2")] * 6)
    assert caught.value.retry_in_s == 2.0
    assert process.breaker.status(CIRCUIT).state == "closed"


def test_rate_limits_neither_count_nor_reset_failures(
    make_process: Callable[..., Process],
) -> None:
    process = make_process(failures=3, max_attempts=10)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(503), status(429, "1"), status(503), status(429, "1"), status(503)])
    assert process.calls == 5
    assert process.waits == [3.0, 1.0, 3.0, 1.0]


def test_retry_after_is_a_lower_bound_of_the_open_time(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    process = make_process(failures=1, open_s=30)
    with pytest.raises(GenesysCircuitOpenError) as caught:
        process.send([status(503, "90")])
    assert caught.value.retry_in_s == 90.0
    clock.now += 60
    with pytest.raises(GenesysCircuitOpenError) as caught:
        process.send([status(200)])
    assert caught.value.retry_in_s == pytest.approx(30.0)
    # A straggler's failure while open: a shorter Retry-After does not shorten the open time,
    # a longer one extends it.
    assert process.breaker.record_failure(Permit(CIRCUIT), retry_after_s=5) == pytest.approx(30)
    assert process.breaker.record_failure(Permit(CIRCUIT), retry_after_s=120) == 120
    assert process.breaker.status(CIRCUIT).open_for_s == pytest.approx(120)
    assert process.breaker.status(CIRCUIT).opens == 1


def test_half_open_lets_one_probe_through_and_a_success_closes(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    first, second = make_process(failures=2), make_process(failures=2)
    with pytest.raises(GenesysCircuitOpenError):
        first.send([status(503), status(503)])
    clock.now += 31
    assert first.breaker.status(CIRCUIT).state == "half-open"

    probe = first.breaker.acquire(CIRCUIT)
    assert probe.probe
    # While the probe is in flight, the other process is turned away for a second.
    with pytest.raises(GenesysCircuitOpenError) as caught:
        second.send([status(200)])
    assert caught.value.retry_in_s == HALF_OPEN_RETRY_S
    assert second.calls == 0

    first.breaker.record_success(probe)
    assert first.breaker.status(CIRCUIT).state == "closed"
    assert second.send([status(200)]).status_code == 200
    assert second.calls == 1


def test_a_probe_through_the_http_layer_closes_the_circuit(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    process = make_process(failures=2)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(503), status(503)])
    clock.now += 30
    assert process.send([status(202)]).status_code == 202
    state = process.breaker.status(CIRCUIT)
    assert (state.state, state.failures, state.opens) == ("closed", 0, 1)


def test_a_failed_probe_opens_it_again_for_another_period(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    process = make_process(failures=3, max_attempts=5)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(503)] * 3)
    clock.now += 30
    sent = process.calls
    with pytest.raises(GenesysCircuitOpenError) as caught:
        process.send([status(503)] * 5)
    assert process.calls == sent + 1  # one failure in half-open is enough: no retries
    assert caught.value.retry_in_s == 30.0
    assert process.breaker.status(CIRCUIT).opens == 2


def test_a_rate_limited_probe_frees_the_probe_for_the_next_caller(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    first, second = make_process(failures=1), make_process(failures=1)
    with pytest.raises(GenesysCircuitOpenError):
        first.send([status(503)])
    clock.now += 30
    probe = first.breaker.acquire(CIRCUIT)
    first.breaker.record_neutral(probe)
    assert first.breaker.status(CIRCUIT).state == "half-open"
    assert second.send([status(200)]).status_code == 200
    assert second.breaker.status(CIRCUIT).state == "closed"


def test_the_circuit_is_shared_by_every_process_on_the_redis(
    make_process: Callable[..., Process],
) -> None:
    first, second = make_process(failures=4, max_attempts=2), make_process(failures=4)
    with pytest.raises(GenesysApiError):
        first.send([status(503), status(503)])
    with pytest.raises(GenesysCircuitOpenError):
        second.send([status(503), status(503), status(503)])
    assert (first.calls, second.calls) == (2, 2)  # four failed attempts between them
    with pytest.raises(GenesysCircuitOpenError):
        first.send([status(200)])
    assert first.calls == 2
    assert first.breaker.status(CIRCUIT).opens == 1


def test_circuits_are_per_provider(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=1)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(503)])
    process.server.script([status(200), status(200)])
    other = process.http.send("POST", URL, circuit="genesys-knowledge-search")
    assert other.status_code == 200
    uncircuited = process.http.send("POST", URL)  # no circuit named: never refused
    assert uncircuited.status_code == 200
    assert process.calls == 3


def test_no_breaker_when_failures_is_zero(make_process: Callable[..., Process]) -> None:
    process = make_process(failures=0, max_attempts=3)
    for _ in range(5):
        with pytest.raises(GenesysApiError):
            process.send([status(503)] * 3)
    assert process.calls == 15
    assert process.breaker.status(CIRCUIT).state == "closed"


def test_an_unreachable_redis_lets_calls_through(
    make_process: Callable[..., Process], redis_server: fakeredis.FakeServer
) -> None:
    process = make_process(failures=1)
    redis_server.connected = False
    assert process.send([status(200)]).status_code == 200
    with pytest.raises(GenesysApiError):
        process.send([status(503)] * 5)
    assert process.calls == 6


def test_state_uses_the_one_key_namespace(
    make_process: Callable[..., Process], redis_server: fakeredis.FakeServer, clock: Clock
) -> None:
    process = make_process(failures=1)
    with pytest.raises(GenesysCircuitOpenError):
        process.send([status(503)])
    clock.now += 30
    process.breaker.acquire(CIRCUIT)
    keys = set(fakeredis.FakeRedis(server=redis_server, decode_responses=True).keys("*"))
    assert keys == {"test:genesys:circuit:async-query", "test:genesys:circuit-probe:async-query"}


def test_attempts_per_call_are_bounded(make_process: Callable[..., Process]) -> None:
    """Without the breaker opening (a high threshold), one call makes at most max_attempts."""
    process = make_process(failures=100, max_attempts=4)
    with pytest.raises(GenesysApiError):
        process.send([status(503)] * 10)
    assert process.calls == 4


def test_the_error_tells_whether_the_call_sent_anything(
    make_process: Callable[..., Process], clock: Clock
) -> None:
    """The submission job counts only runs that reached the provider against its attempts."""
    first, second = make_process(failures=2), make_process(failures=2)
    # `second` fails once and waits to retry; meanwhile `first` fails and opens the circuit.
    second.server.script([status(503), status(200)])
    opened_meanwhile = first.breaker

    def sleep(seconds: float) -> None:
        clock.now += seconds
        with pytest.raises(GenesysCircuitOpenError):
            first.send([status(503)])

    second.http._sleep = sleep
    with pytest.raises(GenesysCircuitOpenError) as on_retry:
        second.http.send("POST", URL, circuit=CIRCUIT)
    assert on_retry.value.nothing_sent is False  # its first attempt was sent
    assert opened_meanwhile.status(CIRCUIT).state == "open"
    with pytest.raises(GenesysCircuitOpenError) as turned_away:
        first.send([status(200)])
    assert turned_away.value.nothing_sent is True
    clock.now += 30
    with pytest.raises(GenesysCircuitOpenError) as probe_failed:
        first.send([status(503)])
    assert probe_failed.value.nothing_sent is False
