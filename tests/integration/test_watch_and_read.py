"""`RedisConnections.watch_and_read`: WATCH and reads in one round trip, on a real Redis.

The ranking job's transaction relies on it (assist/services/suggestions.py): a key watched
this way and changed by someone else before EXEC must abort the transaction, exactly as with
redis-py's own `pipe.watch`."""

from __future__ import annotations

import pytest
import redis

from assist.stores.keys import Keys
from assist.stores.redis_client import RedisConnections
from tests.redis_server import RedisServer


@pytest.fixture
def connections(redis_server: RedisServer) -> RedisConnections:
    raw = redis.Redis.from_url(redis_server.url)
    decoded = redis.Redis.from_url(redis_server.url, decode_responses=True)
    return RedisConnections(decoded=decoded, raw=raw, keys=Keys("test"), blocking=decoded)


def test_reads_come_back_in_order_with_the_client_reply_callbacks(
    connections: RedisConnections,
) -> None:
    raw = connections.raw
    raw.set("a", "1")
    raw.hset("h", mapping={"x": "2"})

    def body(pipe: redis.client.Pipeline) -> list[object]:
        first = connections.watch_and_read(pipe, ["a"], [("GET", "a")])
        second = connections.watch_and_read(
            pipe, ["h"], [("HGETALL", "h"), ("HMGET", "h", "x", "y"), ("GET", "missing")]
        )
        pipe.multi()
        pipe.set("a", "3")
        return [*first, *second]

    assert connections.transact([], body) == [b"1", {b"x": b"2"}, [b"2", None], None]
    assert raw.get("a") == b"3"


@pytest.mark.parametrize("changed", ["a", "h"])
def test_a_watched_key_changed_before_exec_runs_the_body_again(
    connections: RedisConnections, changed: str
) -> None:
    raw = connections.raw
    raw.set("a", "0")
    raw.hset("h", mapping={"x": "0"})
    runs: list[bytes] = []

    def body(pipe: redis.client.Pipeline) -> None:
        (value,) = connections.watch_and_read(pipe, ["a"], [("GET", "a")])
        connections.watch_and_read(pipe, ["h"], [("HGETALL", "h")])
        runs.append(value)
        if len(runs) == 1:  # another client writes between the reads and EXEC
            if changed == "a":
                raw.set("a", "1")
            else:
                raw.hset("h", "x", "1")
        pipe.multi()
        pipe.set("result", str(len(runs)))

    connections.transact([], body)
    assert raw.get("result") == b"2"
    assert runs == ([b"0", b"1"] if changed == "a" else [b"0", b"0"])


def test_a_reply_error_is_raised_after_every_reply_is_read(
    connections: RedisConnections,
) -> None:
    raw = connections.raw
    raw.set("s", "text")

    def body(pipe: redis.client.Pipeline) -> None:
        connections.watch_and_read(pipe, ["s"], [("HGETALL", "s"), ("GET", "s")])

    with pytest.raises(redis.ResponseError):
        connections.transact([], body)
    # The connection went back to the pool in step: the next command reads its own reply.
    assert raw.get("s") == b"text"
    assert raw.ping() is True
