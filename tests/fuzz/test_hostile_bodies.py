"""A corpus of hostile request bodies against the real gunicorn (gevent workers).

Every body goes to the three endpoints that read one: the trigger, feedback and the callback
(signed over the exact bytes, so the body gets past the signature to the parser; unsigned ones
must stop at 401). Each must be answered with the right 4xx in the one error shape, and after
each the server must still answer `/healthz` with every process alive.

The JSON policy (webapp/inputs.py): deep nesting, NaN/Infinity, numbers out of range or over
100 characters, duplicate keys, invalid UTF-8 and lone surrogate escapes are 400
`malformed_json`; a body over ASSIST_MAX_BODY_BYTES is 413 without being read; a body that does
not arrive within ASSIST_BODY_READ_TIMEOUT_S is 408 (while other requests are served); a body
shorter than its Content-Length is 400 `incomplete_body`; headers that never end are dropped.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.fuzz.conftest import BODY_READ_TIMEOUT_S, report, sign
from tests.processes import DESK_TOKEN, ProcessSystem
from webapp.schemas import ErrorBody

pytestmark = pytest.mark.e2e

TRIGGER = "/v1/suggestions"
FEEDBACK = "/v1/feedback"
CALLBACK = "/v1/callbacks/genesys"
ENDPOINTS = (TRIGGER, FEEDBACK, CALLBACK)
MAX_BODY_BYTES = 64 * 1024
#: A slow body must be cut within the read timeout plus this.
GRACE_S = 2.0

VALID = {
    TRIGGER: {
        "conversation_id": "fuzz-hostile",
        "transcript": "I was charged twice",
        "knowledge_source_ids": ["kb-billing"],
    },
    FEEDBACK: {
        "conversation_id": "fuzz-hostile",
        "suggestion_id": "s-1",
        "agent_id": "agent-1",
        "action": "displayed",
    },
    CALLBACK: {"id": "provider-1", "status": "completed", "suggestions": []},
}


@dataclass
class Tally:
    bodies: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(TALLY.statuses.items()))
    server_errors = sum(n for s, n in TALLY.statuses.items() if s >= 500)
    report(f"FUZZ hostile bodies: {TALLY.bodies} requests, {server_errors} 5xx ({statuses})")


def _with(body: dict[str, object], raw: str | bytes) -> bytes:
    """A valid body of the endpoint with `"hostile": <raw>` spliced in as raw JSON bytes."""
    value = raw.encode() if isinstance(raw, str) else raw
    return json.dumps(body)[:-1].encode() + b', "hostile": ' + value + b"}"


NUMBER_FIELD = {TRIGGER: "max_results", FEEDBACK: "rating", CALLBACK: "error"}
TEXT_FIELD = {TRIGGER: "transcript", FEEDBACK: "suggestion_id", CALLBACK: "error"}


def _field(endpoint: str, text: str, name: str | None = None) -> bytes:
    """A valid body of the endpoint whose field `name` (a numeric one by default) is the
    raw JSON `text`."""
    name = name or NUMBER_FIELD[endpoint]
    body = dict(VALID[endpoint])
    body.pop(name, None)
    return json.dumps(body)[:-1].encode() + f', "{name}": '.encode() + text.encode() + b"}"


#: Not UTF-8: a callback's signature cannot be verified over it (Standard Webhooks signs text).
NOT_UTF8 = ("invalid UTF-8", "overlong UTF-8", "UTF-16")


def expected(endpoint: str, name: str) -> tuple[int, str]:
    if endpoint == CALLBACK and name in NOT_UTF8:
        return 401, "invalid_signature"
    return 400, "malformed_json"


def corpus(endpoint: str) -> list[tuple[str, bytes, str]]:
    """(name, body, error code of a 400) for one endpoint."""
    valid = VALID[endpoint]
    first_key = next(iter(valid))
    return [
        ("nesting within the size limit", b"[" * 30_000 + b"]" * 30_000, "malformed_json"),
        ("nesting 40 levels in a field", _with(valid, "[" * 40 + "]" * 40), "malformed_json"),
        ("objects nested 33 deep", _with(valid, '{"a":' * 33 + "1" + "}" * 33), "malformed_json"),
        ("1e400", _field(endpoint, "1e400"), "malformed_json"),
        ("-1e400", _field(endpoint, "-1e400"), "malformed_json"),
        ("a 5000-digit integer", _field(endpoint, "9" * 5000), "malformed_json"),
        ("a 101-digit integer", _field(endpoint, "1" * 101), "malformed_json"),
        ("NaN", _field(endpoint, "NaN"), "malformed_json"),
        ("Infinity", _field(endpoint, "Infinity"), "malformed_json"),
        ("-Infinity", _field(endpoint, "-Infinity"), "malformed_json"),
        ("a bare NaN", b"NaN", "malformed_json"),
        ("invalid UTF-8", _with(valid, b'"caf\xff\xfe\xc3("'), "malformed_json"),
        ("a lone surrogate escape", _with(valid, '"\\ud800"'), "malformed_json"),
        (
            "a lone surrogate in a key",
            json.dumps({**valid, "\ud800": 1}).encode(),
            "malformed_json",
        ),
        ("overlong UTF-8", _with(valid, b'"\xc0\xaf"'), "malformed_json"),
        ("UTF-16", json.dumps(valid).encode("utf-16"), "malformed_json"),
        (
            "a duplicate key",
            json.dumps(valid)[:-1].encode() + f', "{first_key}": "other"}}'.encode(),
            "malformed_json",
        ),
        ("a duplicate nested key", _with(valid, '{"a": 1, "a": 2}'), "malformed_json"),
        ("truncated JSON", json.dumps(valid).encode()[:-5], "malformed_json"),
        ("an empty body", b"", "malformed_json"),
        ("a JSON array", b"[1, 2, 3]", "malformed_json"),
        ("a NUL byte", b"\x00", "malformed_json"),
    ]


# --- raw HTTP over a socket: bodies and timings httpx would not produce -----------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _connect(system: ProcessSystem, timeout_s: float = 15) -> socket.socket:
    return socket.create_connection(("127.0.0.1", system.web_port), timeout=timeout_s)


def _head(endpoint: str, length: int | None, content_type: str = "application/json") -> bytes:
    lines = [
        f"POST {endpoint} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {DESK_TOKEN}",
        f"Content-Type: {content_type}",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> Answer | None:
    """One HTTP response (Content-Length framed); None if the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def _count(status: int) -> None:
    TALLY.bodies += 1
    TALLY.statuses[status] += 1


def assert_error(status: int, body: bytes, expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, (status, body[:500])
    error = ErrorBody.model_validate_json(body).error
    assert error.request_id and error.message
    if code is not None:
        assert error.code == code, error


def assert_healthy(system: ProcessSystem) -> None:
    for name, process in system.processes.items():
        assert process.poll() is None, f"{name} exited: {system.log_tail(name)}"
    started = time.monotonic()
    assert httpx.get(f"{system.web_url}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 2


def _signed_headers(raw: bytes) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(raw, msg_id, timestamp),
    }


def post(
    system: ProcessSystem, endpoint: str, raw: bytes, content_type: str = "application/json"
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if endpoint == CALLBACK:
        headers.update(_signed_headers(raw))
    response = system.desk.post(endpoint, content=raw, headers=headers)
    _count(response.status_code)
    return response


# --- the corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_json_is_refused(system: ProcessSystem, endpoint: str) -> None:
    for name, raw, _ in corpus(endpoint):
        assert len(raw) <= MAX_BODY_BYTES, name
        response = post(system, endpoint, raw)
        status, code = expected(endpoint, name)
        assert response.status_code == status, (name, response.status_code, response.text[:300])
        assert_error(response.status_code, response.content, status, code)
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_valid_bodies_still_pass_the_parser(system: ProcessSystem, endpoint: str) -> None:
    """The control: the same bodies without the hostile part are not refused as JSON."""
    raw = json.dumps(VALID[endpoint]).encode()
    response = post(system, endpoint, raw)
    # The trigger queues; feedback and callback name ids nobody knows (404) - not 400.
    assert response.status_code in (202, 404), response.text
    # A BOM and an escaped surrogate pair (one character, here an emoji) are fine.
    response = post(system, endpoint, b"\xef\xbb\xbf" + raw)
    assert response.status_code in (202, 404), response.text
    emoji = _field(endpoint, '"\\ud83d\\ude00 ok"', TEXT_FIELD[endpoint])
    response = post(system, endpoint, emoji)
    assert response.status_code in (202, 404), response.text
    assert_healthy(system)


def test_unsigned_hostile_callbacks_stop_at_the_signature(system: ProcessSystem) -> None:
    for name, raw, _ in corpus(CALLBACK):
        headers = {"Content-Type": "application/json"}
        response = system.desk.post(CALLBACK, content=raw, headers=headers)
        _count(response.status_code)
        assert_error(response.status_code, response.content, 401)
        assert response.json()["error"]["code"] == "missing_signature", name
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_json_is_a_415(
    system: ProcessSystem, endpoint: str, content_type: str
) -> None:
    response = post(system, endpoint, json.dumps(VALID[endpoint]).encode(), content_type)
    assert_error(response.status_code, response.content, 415, "unsupported_media_type")
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_10_mb_body_is_a_413_before_it_is_read(system: ProcessSystem, endpoint: str) -> None:
    size = 10 * 1024 * 1024
    with _connect(system) as sock:
        started = time.monotonic()
        # Announce 10 MB, send 64 KiB of it, then wait: the answer must come anyway.
        sock.sendall(_head(endpoint, size) + b"[" * MAX_BODY_BYTES)
        answer = _read_answer(sock)
        elapsed = time.monotonic() - started
    assert answer is not None, "closed without an answer"
    _count(answer.status)
    assert_error(answer.status, answer.body, 413, "payload_too_large")
    assert elapsed < 2, elapsed
    # Sent in full, with or without Content-Length (chunked): 413 as well.
    response = post(system, endpoint, b"x" * size)
    assert_error(response.status_code, response.content, 413, "payload_too_large")
    chunks = (b"x" * 65536 for _ in range(size // 65536))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DESK_TOKEN}"}
    with httpx.Client(base_url=system.web_url, timeout=15) as client:
        try:
            chunked = client.post(endpoint, content=chunks, headers=headers)
        except httpx.TransportError:
            chunked = None  # the server answered and closed while the client still sent
    if chunked is not None:
        _count(chunked.status_code)
        assert_error(chunked.status_code, chunked.content, 413, "payload_too_large")
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_chunked_body_over_the_limit_is_a_413(system: ProcessSystem, endpoint: str) -> None:
    """Valid JSON in the first 64 KiB, then more: refused whole, never cut to the limit."""
    raw = json.dumps(VALID[endpoint]).encode() + b" " * (MAX_BODY_BYTES * 2)
    headers = {"Content-Type": "application/json"}
    if endpoint == CALLBACK:
        headers.update(_signed_headers(raw))
    pieces = (raw[i : i + 8192] for i in range(0, len(raw), 8192))
    response = system.desk.post(endpoint, content=pieces, headers=headers)
    _count(response.status_code)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response.status_code, response.content, 413, "payload_too_large")
    assert_healthy(system)


def test_a_stalled_upload_is_a_408(system: ProcessSystem) -> None:
    """Content-Length says 1000, 20 bytes come, then nothing: 408 after the read timeout
    (the three endpoints at once)."""
    results: dict[str, tuple[Answer | None, float]] = {}

    def stall(endpoint: str) -> None:
        with _connect(system) as sock:
            started = time.monotonic()
            sock.sendall(_head(endpoint, 1000) + b'{"conversation_id": ')
            answer = _read_answer(sock)
            results[endpoint] = (answer, time.monotonic() - started)

    threads = [threading.Thread(target=stall, args=(endpoint,)) for endpoint in ENDPOINTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BODY_READ_TIMEOUT_S + 10)
    for endpoint in ENDPOINTS:
        answer, elapsed = results[endpoint]
        assert answer is not None, f"{endpoint}: closed without an answer"
        _count(answer.status)
        assert_error(answer.status, answer.body, 408, "request_timeout")
        assert BODY_READ_TIMEOUT_S - 0.5 < elapsed < BODY_READ_TIMEOUT_S + GRACE_S, elapsed
    assert_healthy(system)


def test_a_trickled_upload_is_cut_and_blocks_nobody(system: ProcessSystem) -> None:
    """A byte every 50 ms, for ever (slowloris on the body): 408 within the read timeout,
    while other requests on the same server are answered at once."""
    stop = threading.Event()
    with _connect(system) as sock:
        started = time.monotonic()
        sock.sendall(_head(TRIGGER, 1000))

        def trickle() -> None:
            try:
                while not stop.is_set():
                    sock.sendall(b" ")
                    time.sleep(0.05)
            except OSError:
                pass  # the server closed the connection: what we wanted

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            # Meanwhile: /healthz and a real trigger are served at once, several times.
            for _ in range(5):
                probe = time.monotonic()
                assert httpx.get(f"{system.web_url}/healthz", timeout=2).status_code == 200
                served = system.trigger(conversation_id="fuzz-slowloris", transcript="my bill")
                assert served.status_code == 202, served.text
                assert time.monotonic() - probe < 1
                time.sleep(0.1)
            answer = _read_answer(sock)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            sender.join(timeout=5)
    assert answer is not None, "closed without an answer"
    _count(answer.status)
    assert_error(answer.status, answer.body, 408, "request_timeout")
    assert elapsed < BODY_READ_TIMEOUT_S + GRACE_S, elapsed
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_slow_body_within_the_read_timeout_is_served(
    system: ProcessSystem, endpoint: str
) -> None:
    """The control: a body that comes in pieces, but in time, is read and answered."""
    raw = json.dumps(VALID[endpoint]).encode()
    head = _head(endpoint, len(raw))
    if endpoint == CALLBACK:
        signed = "".join(f"{k}: {v}\r\n" for k, v in _signed_headers(raw).items()).encode()
        head = head[:-2] + signed + b"\r\n"
    with _connect(system) as sock:
        sock.sendall(head)
        step = len(raw) // 4 + 1
        for start in range(0, len(raw), step):
            time.sleep(BODY_READ_TIMEOUT_S / 8)
            sock.sendall(raw[start : start + step])
        answer = _read_answer(sock)
    assert answer is not None, "closed without an answer"
    _count(answer.status)
    assert answer.status in (202, 404), answer.body
    assert_healthy(system)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_shorter_than_its_content_length_is_a_400(
    system: ProcessSystem, endpoint: str
) -> None:
    """Complete JSON, but the client announced more and closed its side: not processed."""
    raw = json.dumps(VALID[endpoint]).encode()
    head = _head(endpoint, len(raw) + 100)
    if endpoint == CALLBACK:
        signed = "".join(f"{k}: {v}\r\n" for k, v in _signed_headers(raw).items()).encode()
        head = head[:-2] + signed + b"\r\n"
    with _connect(system) as sock:
        sock.sendall(head + raw)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_answer(sock)
    assert answer is not None, "closed without an answer"
    _count(answer.status)
    # The callback's signature covers the bytes that came, so it gets past it too.
    assert_error(answer.status, answer.body, 400, "incomplete_body")
    assert_healthy(system)


def test_headers_that_never_end_are_dropped(system: ProcessSystem) -> None:
    with _connect(system) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/suggestions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = _read_answer(sock)
        elapsed = time.monotonic() - started
    assert answer is None or 400 <= answer.status < 500
    assert elapsed < 10, elapsed
    assert_healthy(system)
