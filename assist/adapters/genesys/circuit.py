"""A circuit breaker per outbound provider, its state in Redis so every process shares it.

`ResilientHttp` asks the breaker before each HTTP attempt of a call that names a circuit, and
tells it how the attempt went:

- **failure**: a 5xx answer, or a transport error (connect, timeout, ...). Each failed
  *attempt* counts, not each call after its retries: one call retries for up to
  `max_attempts x Retry-After` seconds, so counting calls would let a dead provider take
  `failures x` that long (and that many calls) before the fleet stops sending.
- **neutral**: 429. The provider is up and asks us to wait; each call waits its `Retry-After`
  (the retry layer) and nothing here changes, so a rate limit never opens a circuit.
- **success**: any other answer (2xx, and 4xx: the provider is up and answered).

`failures` consecutive failures, counted across every process (a success anywhere resets the
count), **open** the circuit for `open_s` seconds, or longer when the failing answer carried a
`Retry-After` (the server's figure is a lower bound of the open time; a later failure with a
longer one extends it). While open, every attempt fails fast with `GenesysCircuitOpenError`
(its `retry_in_s` is the open time left) without touching the network. When the open time has
passed the circuit is **half-open**: one process at a time (a Redis `SET NX` lease of
`probe_lease_s`) sends a probe attempt; the others fail fast, told to look again in a second. A
successful probe closes the circuit, a failed one opens it again for another open period, and
a rate-limited one (429) frees the lease for the next caller.

Shared state, under the one key namespace (`assist.stores.keys.Keys`):
`<prefix>:genesys:circuit:<name>` (hash: `failures`, `open_until`, `opened_at`, `opens`,
`closed_at`; epoch seconds) and `<prefix>:genesys:circuit-probe:<name>` (the probe lease).
Times are the callers' wall clocks: hosts of one deployment are assumed to agree within a
fraction of the open time.

Redis trouble never blocks a call: a breaker that cannot read or write its state lets the
call through (and logs it). With `failures=0` the breakers are off.

Why not pybreaker's `CircuitRedisStorage` (pinned, and otherwise fine with redis-py 8): its
half-open state lets every process through at once (no shared probe lease), its open time is
one fixed `reset_timeout` per breaker (no per-opening lower bound from `Retry-After`), it
stores `opened_at` in whole seconds, and a process that notices another's state change
re-creates the state object, which resets the *shared* failure counter.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import redis
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError

from assist.adapters.genesys.errors import GenesysCircuitOpenError
from assist.logconfig import get_logger
from assist.stores.keys import Keys

log = get_logger(__name__)
_T = TypeVar("_T")

# The circuits of the outbound calls (one per provider call path).
OAUTH_TOKEN = "oauth-token"
ASYNC_QUERY = "async-query"
KNOWLEDGE_SEARCH = "genesys-knowledge-search"
KNOWLEDGE_ANSWER = "genesys-knowledge-answer"
COPILOT_ENGAGEMENT = "copilot-engagement"
RESULTS_WEBHOOK = "results-webhook"
CIRCUITS = (
    OAUTH_TOKEN,
    ASYNC_QUERY,
    KNOWLEDGE_SEARCH,
    KNOWLEDGE_ANSWER,
    COPILOT_ENGAGEMENT,
    RESULTS_WEBHOOK,
)

#: While a probe is in flight, other callers are told to look again this much later.
HALF_OPEN_RETRY_S = 1.0

State = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class Permit:
    """Leave to send one attempt; `probe` when it is the half-open circuit's probe."""

    circuit: str
    probe: bool = False
    lease: str | None = None


@dataclass(frozen=True)
class CircuitStatus:
    circuit: str
    state: State
    failures: int
    opens: int
    open_for_s: float


def _float(value: object) -> float:
    """A number read from Redis; missing or unreadable is 0."""
    if not isinstance(value, str | bytes) or not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        return 0.0


class CircuitBreaker:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        failures: int,
        open_s: float,
        probe_lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`client` must decode replies (`RedisConnections.decoded`)."""
        self._redis = client
        self._keys = keys
        self.failures = failures
        self.open_s = open_s
        self._probe_lease_ms = max(1, int(probe_lease_s * 1000))
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    # --- before an attempt -----------------------------------------------------------------

    def acquire(self, circuit: str) -> Permit:
        """Leave to send one attempt, or `GenesysCircuitOpenError` (nothing is to be sent)."""
        if not self.enabled:
            return Permit(circuit)
        try:
            open_until = _float(self._redis.hget(self._keys.genesys_circuit(circuit), "open_until"))
            if not open_until:
                return Permit(circuit)
            now = self._clock()
            if now < open_until:
                raise GenesysCircuitOpenError(
                    f"{circuit}: circuit open for another {open_until - now:.1f} s",
                    circuit=circuit,
                    retry_in_s=open_until - now,
                    nothing_sent=True,
                )
            lease = uuid.uuid4().hex
            probe_key = self._keys.genesys_circuit_probe(circuit)
            if self._redis.set(probe_key, lease, nx=True, px=self._probe_lease_ms):
                log.info("genesys.circuit_probe", circuit=circuit)
                return Permit(circuit, probe=True, lease=lease)
        except RedisError as exc:
            log.warning("genesys.circuit_unavailable", circuit=circuit, error=repr(exc))
            return Permit(circuit)
        raise GenesysCircuitOpenError(
            f"{circuit}: circuit half-open, its probe call is in flight",
            circuit=circuit,
            retry_in_s=HALF_OPEN_RETRY_S,
            nothing_sent=True,
        )

    # --- after an attempt ------------------------------------------------------------------

    def record_failure(self, permit: Permit, *, retry_after_s: float | None = None) -> float:
        """Count a failed attempt; returns the seconds the circuit stays open (0: closed)."""
        if not self.enabled:
            return 0.0
        circuit = permit.circuit
        key = self._keys.genesys_circuit(circuit)

        def body(pipe: Pipeline) -> tuple[float, bool]:
            open_until_raw, failures_raw = pipe.hmget(key, ["open_until", "failures"])
            open_until, failures = _float(open_until_raw), int(_float(failures_raw))
            now = self._clock()
            if open_until and now < open_until:
                # Already open (an attempt sent before it opened): honour a longer Retry-After.
                if retry_after_s is not None and now + retry_after_s > open_until:
                    pipe.multi()
                    pipe.hset(key, "open_until", repr(now + retry_after_s))
                    return retry_after_s, False
                return open_until - now, False
            if not open_until and failures + 1 < self.failures:
                pipe.multi()
                pipe.hincrby(key, "failures", 1)
                return 0.0, False
            # The threshold is reached, or the half-open probe (or a straggler) failed.
            open_for = max(self.open_s, retry_after_s or 0.0)
            pipe.multi()
            pipe.hset(
                key,
                mapping={"open_until": repr(now + open_for), "opened_at": repr(now), "failures": 0},
            )
            pipe.hincrby(key, "opens", 1)
            pipe.delete(self._keys.genesys_circuit_probe(circuit))
            return open_for, True

        try:
            open_for, opened = self._transact(key, body)
        except RedisError as exc:
            log.warning("genesys.circuit_unavailable", circuit=circuit, error=repr(exc))
            return 0.0
        if opened:
            log.warning(
                "genesys.circuit_opened",
                circuit=circuit,
                open_for_s=round(open_for, 3),
                after_probe=permit.probe,
            )
        return open_for

    def record_success(self, permit: Permit) -> None:
        """An answer that is not a failure: resets the count; a half-open circuit closes."""
        if not self.enabled:
            return
        circuit = permit.circuit
        key = self._keys.genesys_circuit(circuit)
        try:
            open_until_raw, failures_raw = self._redis.hmget(key, ["open_until", "failures"])
            if not permit.probe and not _float(open_until_raw) and not _float(failures_raw):
                return  # closed with no failures: the common case costs one read

            def body(pipe: Pipeline) -> bool:
                open_until = _float(pipe.hget(key, "open_until"))
                now = self._clock()
                if open_until and now < open_until:
                    return False  # opened since this attempt was sent: the next probe decides
                pipe.multi()
                pipe.hset(key, "failures", 0)
                if open_until:
                    pipe.hdel(key, "open_until")
                    pipe.hset(key, "closed_at", repr(now))
                    pipe.delete(self._keys.genesys_circuit_probe(circuit))
                return bool(open_until)

            closed = self._transact(key, body)
        except RedisError as exc:
            log.warning("genesys.circuit_unavailable", circuit=circuit, error=repr(exc))
            return
        if closed:
            log.info("genesys.circuit_closed", circuit=circuit)

    def record_neutral(self, permit: Permit) -> None:
        """A rate-limited answer (429): no count either way; a probe frees its lease."""
        if not self.enabled or not permit.probe:
            return
        probe_key = self._keys.genesys_circuit_probe(permit.circuit)
        try:
            if self._redis.get(probe_key) == permit.lease:
                self._redis.delete(probe_key)
        except RedisError as exc:
            log.warning("genesys.circuit_unavailable", circuit=permit.circuit, error=repr(exc))

    # --- reading -----------------------------------------------------------------------------

    def status(self, circuit: str) -> CircuitStatus:
        raw = self._redis.hgetall(self._keys.genesys_circuit(circuit))
        open_until = _float(raw.get("open_until"))
        now = self._clock()
        state: State = "closed"
        if open_until:
            state = "open" if now < open_until else "half-open"
        return CircuitStatus(
            circuit=circuit,
            state=state,
            failures=int(_float(raw.get("failures"))),
            opens=int(_float(raw.get("opens"))),
            open_for_s=max(0.0, open_until - now) if open_until else 0.0,
        )

    def statuses(self) -> list[CircuitStatus]:
        return [self.status(circuit) for circuit in CIRCUITS]

    def _transact(self, key: str, body: Callable[[Pipeline], _T]) -> _T:
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    result = body(pipe)
                    pipe.execute()
                    return result
                except WatchError:
                    continue


__all__ = ["CIRCUITS", "CircuitBreaker", "CircuitStatus", "Permit"]
