"""Integration tests of the Genesys Cloud emulator, over real loopback sockets.

One emulator serves the whole module (reset before each test); each test that needs a
callback target gets its own tiny receiver server. Waits poll with a deadline, so the file
runs in a few seconds.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from standardwebhooks import Webhook
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from emulator.config import DEFAULT_CALLBACK_SECRET, ConfigError, EmulatorConfig
from emulator.knowledge import KnowledgeBase, load_articles
from emulator.server import EmulatorServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"emulator-test-secret-0123456789ab").decode()
SOURCES = ["kb-accounts", "kb-billing", "kb-tech"]


# --- helpers ---------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A callback target: records every request, answers scripted statuses then a default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.scripted: list[int] = []
        self.default_status = 202
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        # A short poll interval keeps shutdown() (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/callbacks"

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data(as_text=True)
        with self._lock:
            status = self.scripted.pop(0) if self.scripted else self.default_status
            self._received.append(Received(request.path, dict(request.headers), body, status))
        return Response("", status=status)(environ, start_response)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least `count` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.received
            if len(received) >= count:
                return received
            time.sleep(0.01)
        pytest.fail(f"expected {count} callbacks within {timeout}s, got {len(self.received)}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"condition not met within {timeout}s")


def get_token(client: httpx.Client) -> str:
    response = client.post(
        "/oauth/token",
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def query_body(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversationId": str(uuid.uuid4()),
        "transcript": "My card was stolen and I need to reset my password",
        "agentSkills": ["accounts"],
        "knowledgeSourceIds": ["kb-accounts"],
        "callbackUrl": receiver.url,
        "async": True,
    }
    body.update(overrides)
    return body


def post_query(client: httpx.Client, token: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/v1/knowledge/queries", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def assert_genesys_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["message"]
    assert body["details"] == [] and body["errors"] == []
    assert body["contextId"] == response.headers["ININ-Correlation-Id"]


def set_faults(client: httpx.Client, **faults: Any) -> None:
    response = client.post("/emulator/faults", json=faults)
    assert response.status_code == 200, response.text


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        callback_secret=CALLBACK_SECRET,
        callback_delay_ms=10,
        delivery_retry_s=(0.05, 0.05, 0.05),
    )
    server = EmulatorServer(config)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_emulator(emulator: EmulatorServer) -> None:
    emulator.state.reset()


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    yield target
    target.stop()


@pytest.fixture
def token(client: httpx.Client) -> str:
    return get_token(client)


# --- OAuth -----------------------------------------------------------------------------------


def test_token_success_has_genesys_headers(client: httpx.Client, emulator: EmulatorServer) -> None:
    response = client.post(
        "/oauth/token",
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"grant_type": "client_credentials"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    assert len(body["access_token"]) >= 32
    assert response.headers["inin-ratelimit-allowed"] == "180"
    assert int(response.headers["inin-ratelimit-count"]) >= 1
    assert 0 <= int(response.headers["inin-ratelimit-reset"]) <= 60
    uuid.UUID(response.headers["ININ-Correlation-Id"])
    assert emulator.state.records()["token_requests"] == [
        {"client_id": CLIENT_ID, "ok": True, "status": 200}
    ]


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        _basic(CLIENT_ID, "wrong-secret"),
        _basic("someone-else", CLIENT_SECRET),
        "Basic !!not-base64!!",
        f"Bearer {CLIENT_SECRET}",
    ],
    ids=["missing", "wrong-secret", "unknown-client", "garbled", "not-basic"],
)
def test_token_bad_credentials(client: httpx.Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = client.post(
        "/oauth/token", headers=headers, data={"grant_type": "client_credentials"}
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["description"]
    assert "ININ-Correlation-Id" in response.headers


def test_token_bad_grant_or_body(client: httpx.Client) -> None:
    other_grant = client.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "password"}
    )
    json_body = client.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), json={"grant_type": "client_credentials"}
    )

    assert other_grant.status_code == 400
    assert other_grant.json()["error"] == "unsupported_grant_type"
    assert json_body.status_code == 400
    assert json_body.json()["error"] == "invalid_request"


# --- knowledge queries -----------------------------------------------------------------------


def test_query_requires_a_valid_token(client: httpx.Client, receiver: Receiver, token: str) -> None:
    body = query_body(receiver)

    missing = client.post("/v1/knowledge/queries", json=body)
    bogus = post_query(client, "not-a-token", body)
    accepted = post_query(client, token, body)
    assert client.post("/emulator/revoke-tokens").json()["revoked"] >= 1
    revoked = post_query(client, token, body)

    assert_genesys_error(missing, 401, "bad.credentials")
    assert_genesys_error(bogus, 401, "bad.credentials")
    assert accepted.status_code == 202
    assert_genesys_error(revoked, 401, "bad.credentials")


@pytest.mark.parametrize(
    "overrides",
    [
        {"conversationId": None},
        {"knowledgeSourceIds": []},
        {"knowledgeSourceIds": None},
        {"callbackUrl": "ftp://example.test/cb"},
        {"callbackUrl": "/relative"},
        {"agentSkills": "billing"},
        {"transcript": 42},
        {"async": False},
    ],
    ids=repr,
)
def test_query_invalid_body(
    client: httpx.Client, receiver: Receiver, token: str, overrides: dict[str, Any]
) -> None:
    body = {k: v for k, v in query_body(receiver, **overrides).items() if v is not None}

    response = post_query(client, token, body)

    assert_genesys_error(response, 400, "bad.request")
    assert "inin-ratelimit-count" in response.headers


def test_query_non_json_body(client: httpx.Client, token: str) -> None:
    response = client.post(
        "/v1/knowledge/queries",
        content=b"conversationId=1",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )

    assert_genesys_error(response, 400, "bad.request")


def test_query_happy_path_sends_signed_processing_then_completed(
    client: httpx.Client, receiver: Receiver, token: str, emulator: EmulatorServer
) -> None:
    body = query_body(receiver)

    response = post_query(client, token, body)

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["id"].startswith("q_")
    assert accepted["status"] == "queued"
    assert accepted["callbackUrl"] == receiver.url
    assert accepted["createdTimestamp"].endswith("Z")
    assert "inin-ratelimit-reset" in response.headers

    processing, completed = receiver.wait_for(2)
    webhook = Webhook(CALLBACK_SECRET)
    for callback in (processing, completed):
        assert callback.path == "/callbacks"
        assert callback.headers["Content-Type"] == "application/json"
        assert callback.headers["Webhook-Id"].startswith("msg_")
        assert callback.headers["Webhook-Signature"].startswith("v1,")
        webhook.verify(callback.body, callback.headers)  # raises if the signature is wrong
    assert processing.headers["Webhook-Id"] != completed.headers["Webhook-Id"]
    assert processing.json() == {"id": accepted["id"], "status": "processing", "suggestions": []}

    result = completed.json()
    assert result["id"] == accepted["id"]
    assert result["status"] == "completed"
    suggestions = result["suggestions"]
    assert suggestions, "the transcript mentions a stolen card and a password reset"
    assert [s["id"] for s in suggestions][:2] == ["kb-art-005", "kb-art-004"]
    for suggestion in suggestions:
        assert set(suggestion) == {
            "id",
            "title",
            "content",
            "confidence",
            "knowledge_source_id",
            "metadata",
        }
        assert suggestion["knowledge_source_id"] == "kb-accounts"
        assert 0.0 <= suggestion["confidence"] <= 1.0
        assert suggestion["metadata"]["tags"]
    confidences = [s["confidence"] for s in suggestions]
    assert confidences == sorted(confidences, reverse=True)

    records = emulator.state.records()
    assert records["queries"] == [{"id": accepted["id"], "status_code": 202, "body": body}]
    assert [(c["status"], c["attempt"], c["response_status"]) for c in records["callbacks"]] == [
        ("processing", 1, 202),
        ("completed", 1, 202),
    ]


def test_same_article_in_two_sources_comes_back_twice(
    client: httpx.Client, receiver: Receiver, token: str
) -> None:
    body = query_body(
        receiver, transcript="password reset please", knowledgeSourceIds=["kb-accounts", "kb-tech"]
    )

    assert post_query(client, token, body).status_code == 202

    suggestions = receiver.wait_for(2)[1].json()["suggestions"]
    same_id = [s for s in suggestions if s["id"] == "kb-art-004"]
    assert {s["knowledge_source_id"] for s in same_id} == {"kb-accounts", "kb-tech"}


def test_matching_rules() -> None:
    kb = KnowledgeBase(load_articles())

    stolen = kb.match("my card was stolen", SOURCES)
    default = kb.match("", SOURCES)
    unknown_source = kb.match("card stolen", ["kb-does-not-exist"])
    no_overlap = kb.match("hello there", SOURCES)
    many = kb.match("billing charge bill refund payment roaming late fees", SOURCES)

    # kb-art-005 (base 0.95) shares "card" and "stolen": 0.95 * (0.5 + 0.5 * 2/3)
    assert stolen[0]["id"] == "kb-art-005"
    assert stolen[0]["confidence"] == round(0.95 * (0.5 + 0.5 * 2 / 3), 3)
    assert [(s["id"], s["confidence"]) for s in default] == [
        ("kb-art-005", 0.475),
        ("kb-art-001", 0.45),
        ("kb-art-007", 0.45),
    ]
    assert unknown_source == []
    assert no_overlap == []
    assert len(many) == 5
    assert kb.match("bill", ["kb-billing"]) == kb.match("bill", ["kb-billing"])


# --- callback delivery -----------------------------------------------------------------------


def test_duplicate_deliveries_keep_the_webhook_id(
    client: httpx.Client, receiver: Receiver, token: str
) -> None:
    set_faults(client, duplicate_deliveries=4)

    assert post_query(client, token, query_body(receiver)).status_code == 202

    received = receiver.wait_for(10)
    time.sleep(0.1)  # make sure no eleventh copy follows
    assert len(receiver.received) == 10
    webhook = Webhook(CALLBACK_SECRET)
    for callback in received:
        webhook.verify(callback.body, callback.headers)
    statuses = [c.json()["status"] for c in received]
    assert statuses == ["processing"] * 5 + ["completed"] * 5
    completed_ids = {c.headers["Webhook-Id"] for c in received[5:]}
    assert len(completed_ids) == 1
    assert completed_ids != {c.headers["Webhook-Id"] for c in received[:5]}


def test_redelivers_after_non_2xx(
    client: httpx.Client, receiver: Receiver, token: str, emulator: EmulatorServer
) -> None:
    receiver.scripted = [503, 503]

    assert post_query(client, token, query_body(receiver)).status_code == 202

    received = receiver.wait_for(4)
    assert [(c.json()["status"], c.answered) for c in received] == [
        ("processing", 503),
        ("processing", 503),
        ("processing", 202),
        ("completed", 202),
    ]
    assert len({c.headers["Webhook-Id"] for c in received[:3]}) == 1
    webhook = Webhook(CALLBACK_SECRET)
    for callback in received:
        webhook.verify(callback.body, callback.headers)
    callbacks = emulator.state.records()["callbacks"]
    assert [(c["attempt"], c["response_status"], c["gave_up"]) for c in callbacks] == [
        (1, 503, False),
        (2, 503, False),
        (3, 202, False),
        (1, 202, False),
    ]


def test_gives_up_when_retries_run_out(
    client: httpx.Client, receiver: Receiver, token: str, emulator: EmulatorServer
) -> None:
    # A port nobody listens on: every attempt is a connection error.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/callbacks"
    body = query_body(receiver, callbackUrl=dead_url)

    assert post_query(client, token, body).status_code == 202

    def completed_gave_up() -> bool:
        callbacks = emulator.state.records()["callbacks"]
        return any(c["status"] == "completed" and c["gave_up"] for c in callbacks)

    wait_until(completed_gave_up)
    callbacks = emulator.state.records()["callbacks"]
    # 1 attempt + 3 retries, for each of the two messages.
    assert [(c["status"], c["attempt"]) for c in callbacks] == [
        ("processing", 1),
        ("processing", 2),
        ("processing", 3),
        ("processing", 4),
        ("completed", 1),
        ("completed", 2),
        ("completed", 3),
        ("completed", 4),
    ]
    assert all(c["response_status"] is None and c["error"] for c in callbacks)
    assert [c["gave_up"] for c in callbacks] == [False, False, False, True] * 2


def test_drop_callbacks(
    client: httpx.Client, receiver: Receiver, token: str, emulator: EmulatorServer
) -> None:
    set_faults(client, drop_callbacks=True)

    assert post_query(client, token, query_body(receiver)).status_code == 202

    time.sleep(0.3)  # callbacks would arrive within ~10 ms
    assert receiver.received == []
    assert emulator.state.records()["callbacks"] == []


def test_callback_delay_override(client: httpx.Client, receiver: Receiver, token: str) -> None:
    set_faults(client, callback_delay_ms=250)
    started = time.monotonic()

    assert post_query(client, token, query_body(receiver)).status_code == 202

    receiver.wait_for(1)
    assert time.monotonic() - started >= 0.25


def test_reset_abandons_pending_callbacks(
    client: httpx.Client, receiver: Receiver, token: str
) -> None:
    set_faults(client, callback_delay_ms=200)
    assert post_query(client, token, query_body(receiver)).status_code == 202

    assert client.post("/emulator/reset").status_code == 200

    time.sleep(0.35)
    assert receiver.received == []


# --- faults ----------------------------------------------------------------------------------


def test_rate_limit_next(
    client: httpx.Client, receiver: Receiver, emulator: EmulatorServer
) -> None:
    token = get_token(client)
    set_faults(client, rate_limit_next=2, retry_after_s=3)

    limited_token = client.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
    )
    limited_query = post_query(client, token, query_body(receiver))
    accepted = post_query(client, token, query_body(receiver))

    for response in (limited_token, limited_query):
        assert_genesys_error(response, 429, "too.many.requests")
        assert response.headers["Retry-After"] == "3"
        assert "inin-ratelimit-count" in response.headers
    assert accepted.status_code == 202
    assert client.get("/emulator/faults").json()["rate_limit_next"] == 0
    records = emulator.state.records()
    assert records["token_requests"][-1] == {"client_id": CLIENT_ID, "ok": False, "status": 429}
    assert [q["status_code"] for q in records["queries"]] == [429, 202]


def test_rest_calls_are_recorded_with_their_time_and_retry_after(
    client: httpx.Client, receiver: Receiver, emulator: EmulatorServer
) -> None:
    token = get_token(client)
    set_faults(client, rate_limit_next=1, server_error_next=1, retry_after_s=2)
    before = time.time()
    limited = post_query(client, token, query_body(receiver, conversationId="conv-rc"))
    failed = post_query(client, token, query_body(receiver, conversationId="conv-rc"))
    accepted = post_query(client, token, query_body(receiver, conversationId="conv-rc"))

    assert [r.status_code for r in (limited, failed, accepted)] == [429, 503, 202]
    calls = [c for c in emulator.state.records()["rest_calls"] if c["route"] == "knowledge_query"]
    assert [(c["status_code"], c["fault"], c["retry_after_s"]) for c in calls] == [
        (429, "rate_limited", 2),
        (503, "server_error", None),
        (202, None, None),
    ]
    assert {c["conversation_id"] for c in calls} == {"conv-rc"}
    times = [c["at"] for c in calls]
    assert before <= times[0] <= times[1] <= times[2] <= time.time()
    [token_call] = [
        c for c in emulator.state.records()["rest_calls"] if c["route"] == "oauth_token"
    ]
    assert (token_call["status_code"], token_call["conversation_id"]) == (200, None)


def test_server_error_next(client: httpx.Client) -> None:
    set_faults(client, server_error_next=1)

    failed = client.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
    )

    assert_genesys_error(failed, 503, "service.unavailable")
    assert "Retry-After" not in failed.headers
    get_token(client)  # the next call succeeds


def test_rate_limit_ratio_is_reproducible(client: httpx.Client) -> None:
    def pattern() -> list[int]:
        set_faults(client, rate_limit_ratio=0.5)  # setting faults reseeds the generator
        return [
            client.post(
                "/oauth/token",
                auth=(CLIENT_ID, CLIENT_SECRET),
                data={"grant_type": "client_credentials"},
            ).status_code
            for _ in range(16)
        ]

    first, second = pattern(), pattern()

    assert first == second
    assert set(first) == {200, 429}


def test_slow_ms(client: httpx.Client) -> None:
    set_faults(client, slow_ms=150)
    started = time.monotonic()

    get_token(client)

    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    "faults",
    [{"no_such_fault": 1}, {"rate_limit_next": "3"}, {"rate_limit_ratio": 1.5}, [1]],
    ids=["unknown", "wrong-type", "out-of-range", "not-an-object"],
)
def test_invalid_faults_are_refused(client: httpx.Client, faults: Any) -> None:
    response = client.post("/emulator/faults", json=faults)

    assert response.status_code == 400
    assert client.get("/emulator/faults").json()["rate_limit_next"] == 0


def test_faults_merge(client: httpx.Client) -> None:
    set_faults(client, slow_ms=5)
    set_faults(client, duplicate_deliveries=2)

    faults = client.get("/emulator/faults").json()

    assert faults["slow_ms"] == 5
    assert faults["duplicate_deliveries"] == 2
    assert faults["drop_callbacks"] is False


# --- analytics, health, records --------------------------------------------------------------


def test_analytics_receiver(client: httpx.Client, emulator: EmulatorServer) -> None:
    set_faults(client, analytics_error_next=1)

    unavailable = client.post("/analytics/events", json={"type": "lost"})
    one = client.post("/analytics/events", json={"type": "suggestion.shown", "n": 1})
    two = client.post("/analytics/events", json=[{"type": "a"}, {"type": "b"}])
    not_json = client.post("/analytics/events", content=b"{nope")
    not_objects = client.post("/analytics/events", json=[{"type": "a"}, 3])

    assert unavailable.status_code == 503
    assert (one.status_code, one.json()) == (202, {"received": 1})
    assert (two.status_code, two.json()) == (202, {"received": 2})
    assert not_json.status_code == 400
    assert not_objects.status_code == 400
    assert emulator.state.records()["analytics_events"] == [
        {"type": "suggestion.shown", "n": 1},
        {"type": "a"},
        {"type": "b"},
    ]


def test_healthz_and_unknown_route(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json()["status"] == 404


def test_records_endpoint_and_reset(client: httpx.Client, receiver: Receiver) -> None:
    token = get_token(client)
    set_faults(client, slow_ms=1)
    query_id = post_query(client, token, query_body(receiver)).json()["id"]
    client.post("/analytics/events", json={"type": "x"})
    receiver.wait_for(2)

    def callbacks_recorded() -> bool:
        return len(client.get("/emulator/records").json()["callbacks"]) == 2

    wait_until(callbacks_recorded)
    records = client.get("/emulator/records").json()
    assert set(records) == {
        "token_requests",
        "rest_calls",
        "queries",
        "callbacks",
        "analytics_events",
        "notifications",
        "knowledge_searches",
        "knowledge_search_updates",
        "results",
        "engagements",
        "training",
    }
    assert records["token_requests"] == [{"client_id": CLIENT_ID, "ok": True, "status": 200}]
    assert [q["id"] for q in records["queries"]] == [query_id]
    assert {c["provider_request_id"] for c in records["callbacks"]} == {query_id}
    assert all(c["url"] == receiver.url for c in records["callbacks"])
    assert records["analytics_events"] == [{"type": "x"}]

    assert client.post("/emulator/reset").status_code == 200

    assert client.get("/emulator/records").json() == {
        "token_requests": [],
        "rest_calls": [],
        "queries": [],
        "callbacks": [],
        "analytics_events": [],
        "knowledge_searches": [],
        "knowledge_search_updates": [],
        "results": [],
        "engagements": [],
        "training": [],
        "notifications": {
            "channels": [],
            "channels_removed": [],
            "subscription_calls": [],
            "connections": [],
            "frames_sent": {},
            "pings_received": {},
        },
    }
    assert client.get("/emulator/faults").json()["slow_ms"] == 0
    assert post_query(client, token, query_body(receiver)).status_code == 202  # token kept


# --- configuration and entry point -----------------------------------------------------------


def test_config_from_env_fallbacks() -> None:
    assert EmulatorConfig.from_env({}) == EmulatorConfig()
    assert EmulatorConfig().callback_secret == DEFAULT_CALLBACK_SECRET

    from_assist = EmulatorConfig.from_env(
        {
            "ASSIST_GENESYS_CLIENT_ID": "assist-id",
            "ASSIST_GENESYS_CLIENT_SECRET": "assist-secret",
            "ASSIST_CALLBACK_SECRETS": f"{CALLBACK_SECRET}, whsec_b3RoZXI=",
        }
    )
    explicit = EmulatorConfig.from_env(
        {
            "EMULATOR_CLIENT_ID": "emu-id",
            "EMULATOR_CLIENT_SECRET": "emu-secret",
            "ASSIST_GENESYS_CLIENT_ID": "assist-id",
            "EMULATOR_PORT": "9999",
            "EMULATOR_CALLBACK_DELAY_MS": "5",
            "EMULATOR_TOKEN_TTL_S": "60",
            "EMULATOR_DELIVERY_RETRY_S": "0.1, 0.2",
        }
    )

    assert (from_assist.client_id, from_assist.client_secret) == ("assist-id", "assist-secret")
    assert from_assist.callback_secret == CALLBACK_SECRET
    assert (explicit.client_id, explicit.client_secret) == ("emu-id", "emu-secret")
    assert explicit.port == 9999
    assert explicit.callback_delay_ms == 5
    assert explicit.token_ttl_s == 60
    assert explicit.delivery_retry_s == (0.1, 0.2)
    with pytest.raises(ConfigError, match="EMULATOR_PORT"):
        EmulatorConfig.from_env({"EMULATOR_PORT": "eighty"})
    with pytest.raises(ConfigError, match="EMULATOR_CALLBACK_SECRET"):
        EmulatorConfig.from_env({"EMULATOR_CALLBACK_SECRET": "whsec_"})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "localhost", "::"])
def test_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ConfigError, match="refusing to bind"):
        EmulatorConfig(host=host)
    with pytest.raises(ConfigError, match="refusing to bind"):
        EmulatorServer(EmulatorConfig(), host=host)


def _read_line_containing(proc: subprocess.Popen[bytes], text: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = proc.stdout.readline().decode()
            if not line:
                break  # the process exited
            if text in line:
                return line
    pytest.fail(f"the emulator did not print {text!r} within {timeout}s")


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "ASSIST_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_main_serves_until_sigterm() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0"],
        cwd=REPO_ROOT,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        try:
            line = _read_line_containing(proc, "listening on http://127.0.0.1:", timeout=15)
            url = line.rsplit(" ", 1)[-1].strip()
            with httpx.Client(base_url=url, timeout=5) as http:
                assert http.get("/healthz").json() == {"status": "ok"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_main_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO_ROOT,
        env=_subprocess_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert b"refusing to bind" in result.stderr
