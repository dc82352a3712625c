"""TokenProvider (OAuth client credentials, shared through Redis) and AsyncQueryProvider.

Redis is fakeredis on one FakeServer per test, so two providers built on it share a token
the way two processes share one Redis. fakeredis runs Lua only with the optional `lupa`
package, which this project does not install; redis-py's `Lock.release` is a Lua script, so
the fake clients hand out a lock that releases with GET + DELETE instead. The lock itself
is not what these tests check.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import fakeredis
import httpx
import pytest
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from assist.adapters.genesys import auth as auth_module
from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.errors import GenesysApiError, GenesysAuthError
from assist.adapters.genesys.http import ResilientHttp
from assist.adapters.genesys.provider import AsyncQueryProvider
from assist.core.models import SuggestionRequest
from assist.settings import Settings
from assist.stores.keys import Keys
from assist.stores.redis_client import RedisConnections
from tests.conftest import CLIENT_ID, CLIENT_SECRET, make_settings

LOGIN = "https://login.test"
QUERY_URL = "https://provider.test/v1/knowledge/queries"
CALLBACK_URL = "https://assist.test/v1/callbacks/genesys?request_id=req_1"


class _ReleaseWithoutLua(Lock):
    def do_release(self, expected_token: str | bytes) -> None:
        stored = self.redis.get(self.name)
        if isinstance(stored, str):
            stored = stored.encode()
        expected = expected_token.encode() if isinstance(expected_token, str) else expected_token
        if stored != expected:
            raise LockNotOwnedError("lock not owned", lock_name=self.name)
        self.redis.delete(self.name)


class _FakeRedis(fakeredis.FakeRedis):
    def lock(self, name: str, *args: Any, **kwargs: Any) -> Lock:  # type: ignore[override]
        kwargs["lock_class"] = _ReleaseWithoutLua
        lock: Lock = super().lock(name, *args, **kwargs)
        return lock


def connections(server: fakeredis.FakeServer) -> RedisConnections:
    return RedisConnections(
        decoded=_FakeRedis(server=server, decode_responses=True),
        raw=_FakeRedis(server=server),
        keys=Keys("test"),
        blocking=_FakeRedis(server=server, decode_responses=True),
    )


class Clock:
    """Stands in for the `time` module inside assist.adapters.genesys.auth."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


class TokenEndpoint:
    """A Genesys login host: hands out tok-1, tok-2, ... or a scripted error status."""

    def __init__(self, *, expires_in: int = 3600, fail_with: int | None = None) -> None:
        self.expires_in = expires_in
        self.fail_with = fail_with
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"error": "invalid_client"})
        return httpx.Response(
            200,
            json={
                "access_token": f"tok-{len(self.requests)}",
                "token_type": "bearer",
                "expires_in": self.expires_in,
            },
        )


def http_for(handler: Callable[[httpx.Request], httpx.Response]) -> ResilientHttp:
    return ResilientHttp(
        httpx.Client(transport=httpx.MockTransport(handler)),
        max_attempts=3,
        max_retry_after_s=180,
        sleep=lambda _: None,
        jitter=lambda _: 0.0,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, genesys_login_base_url=LOGIN, token_refresh_margin_s=300)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_700_000_000.0)
    monkeypatch.setattr(auth_module, "time", fake)
    return fake


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def provider_factory(
    settings: Settings, server: fakeredis.FakeServer, endpoint: TokenEndpoint, clock: Clock
) -> Iterator[Callable[[], TokenProvider]]:
    built: list[RedisConnections] = []

    def build() -> TokenProvider:
        redis = connections(server)
        built.append(redis)
        return TokenProvider(settings, http_for(endpoint), redis)

    yield build
    for redis in built:
        redis.close()


# --- TokenProvider ---------------------------------------------------------------------------


def test_the_token_request_is_a_client_credentials_grant(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint
) -> None:
    assert provider_factory().token() == "tok-1"
    (request,) = endpoint.requests
    assert request.method == "POST"
    assert str(request.url) == f"{LOGIN}/oauth/token"
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}


def test_the_token_is_cached(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint
) -> None:
    tokens = provider_factory()
    assert [tokens.token() for _ in range(3)] == ["tok-1"] * 3
    assert len(endpoint.requests) == 1


def test_the_token_is_shared_through_redis(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint
) -> None:
    assert provider_factory().token() == "tok-1"
    # Another process: its own clients and provider, the same Redis.
    assert provider_factory().token() == "tok-1"
    assert len(endpoint.requests) == 1


def test_the_cached_token_does_not_hold_the_client_secret(
    provider_factory: Callable[[], TokenProvider], server: fakeredis.FakeServer
) -> None:
    provider_factory().token()
    raw = fakeredis.FakeRedis(server=server)
    stored = b"".join(raw.get(key) or b"" for key in raw.keys("*"))
    raw.close()
    assert b"tok-1" in stored
    assert CLIENT_SECRET.encode() not in stored


def test_a_token_is_refetched_within_the_refresh_margin(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint, clock: Clock
) -> None:
    tokens = provider_factory()
    start = clock.now
    assert tokens.token() == "tok-1"  # expires at start + 3600, refreshed from start + 3300
    clock.now = start + 3299
    assert tokens.token() == "tok-1"
    clock.now = start + 3301
    assert tokens.token() == "tok-2"
    assert len(endpoint.requests) == 2


def test_a_token_shorter_lived_than_the_margin_is_not_cached(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    endpoint = TokenEndpoint(expires_in=200)  # less than the 300 s refresh margin
    tokens = TokenProvider(settings, http_for(endpoint), connections(server))
    assert tokens.token() == "tok-1"
    assert tokens.token() == "tok-2"


def test_invalidate_drops_the_refused_token(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint
) -> None:
    tokens = provider_factory()
    assert tokens.token() == "tok-1"
    tokens.invalidate("tok-1")
    assert tokens.token() == "tok-2"
    # Another process sees the new token, not the refused one.
    assert provider_factory().token() == "tok-2"
    assert len(endpoint.requests) == 2


def test_invalidate_keeps_a_newer_token(
    provider_factory: Callable[[], TokenProvider], endpoint: TokenEndpoint
) -> None:
    tokens = provider_factory()
    tokens.token()
    tokens.invalidate("tok-1")
    tokens.token()  # tok-2 is now cached
    # A late 401 for tok-1 (from a slower process) must not drop tok-2.
    provider_factory().invalidate("tok-1")
    assert tokens.token() == "tok-2"
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("code", [400, 401, 403])
def test_refused_credentials_raise_an_auth_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock, code: int
) -> None:
    endpoint = TokenEndpoint(fail_with=code)
    tokens = TokenProvider(settings, http_for(endpoint), connections(server))
    with pytest.raises(GenesysAuthError):
        tokens.token()
    assert len(endpoint.requests) == 1


def test_a_server_error_from_the_token_endpoint_is_an_api_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    tokens = TokenProvider(settings, http_for(TokenEndpoint(fail_with=500)), connections(server))
    with pytest.raises(GenesysApiError) as caught:
        tokens.token()
    assert caught.value.status_code == 500


def test_an_invalid_token_body_is_an_api_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token": "no access_token field"})

    with pytest.raises(GenesysApiError):
        TokenProvider(settings, http_for(handler), connections(server)).token()


def test_no_client_id_fails_without_calling_the_endpoint(
    tmp_path: Path, server: fakeredis.FakeServer, endpoint: TokenEndpoint, clock: Clock
) -> None:
    settings = make_settings(tmp_path, genesys_login_base_url=LOGIN, genesys_client_id="")
    with pytest.raises(GenesysAuthError):
        TokenProvider(settings, http_for(endpoint), connections(server)).token()
    assert endpoint.requests == []


# --- AsyncQueryProvider ----------------------------------------------------------------------


def make_request() -> SuggestionRequest:
    now = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    return SuggestionRequest(
        request_id="req_1",
        conversation_id="conv-1",
        agent_id="agent-7",
        agent_skills=("billing", "refunds"),
        knowledge_source_ids=("kb-billing", "kb-accounts"),
        transcript="I was charged twice",
        max_results=5,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(minutes=2),
    )


ACCEPTED = {
    "id": "prov-123",
    "status": "queued",
    "callbackUrl": CALLBACK_URL,
    "createdTimestamp": "2025-03-14T09:00:00Z",
}


class GenesysHost:
    """Token endpoint plus the async-query endpoint, which answers by bearer token."""

    def __init__(self, query_answers: dict[str, httpx.Response]) -> None:
        self.tokens = TokenEndpoint()
        self.query_answers = query_answers
        self.queries: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return self.tokens(request)
        self.queries.append(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return self.query_answers.get(token, httpx.Response(401))


def query_provider(
    host: GenesysHost, settings: Settings, server: fakeredis.FakeServer
) -> AsyncQueryProvider:
    http = http_for(host)
    return AsyncQueryProvider(http, TokenProvider(settings, http, connections(server)), QUERY_URL)


def test_submit_posts_the_camel_case_query_with_a_bearer_token(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    host = GenesysHost({"tok-1": httpx.Response(202, json=ACCEPTED)})
    accepted = query_provider(host, settings, server).submit(make_request(), CALLBACK_URL)
    assert accepted.id == "prov-123"
    assert accepted.status == "queued"
    assert accepted.callback_url == CALLBACK_URL
    (query,) = host.queries
    assert query.method == "POST"
    assert str(query.url) == QUERY_URL
    assert query.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(query.content) == {
        "conversationId": "conv-1",
        "transcript": "I was charged twice",
        "agentSkills": ["billing", "refunds"],
        "knowledgeSourceIds": ["kb-billing", "kb-accounts"],
        "callbackUrl": CALLBACK_URL,
        "async": True,
    }


def test_a_401_refetches_the_token_and_retries_once(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    host = GenesysHost({"tok-1": httpx.Response(401), "tok-2": httpx.Response(202, json=ACCEPTED)})
    accepted = query_provider(host, settings, server).submit(make_request(), CALLBACK_URL)
    assert accepted.id == "prov-123"
    assert [q.headers["Authorization"] for q in host.queries] == ["Bearer tok-1", "Bearer tok-2"]
    assert len(host.tokens.requests) == 2


def test_a_second_401_is_an_auth_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    host = GenesysHost({})  # every token refused
    with pytest.raises(GenesysAuthError):
        query_provider(host, settings, server).submit(make_request(), CALLBACK_URL)
    assert len(host.queries) == 2  # one retry, not a loop


def test_a_400_is_an_api_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    host = GenesysHost(
        {
            "tok-1": httpx.Response(
                400, headers={"ININ-Correlation-Id": "corr-9"}, json={"message": "bad"}
            )
        }
    )
    with pytest.raises(GenesysApiError) as caught:
        query_provider(host, settings, server).submit(make_request(), CALLBACK_URL)
    assert caught.value.status_code == 400
    assert caught.value.correlation_id == "corr-9"
    assert not caught.value.retryable
    assert len(host.queries) == 1


def test_an_invalid_acceptance_body_is_an_api_error(
    settings: Settings, server: fakeredis.FakeServer, clock: Clock
) -> None:
    host = GenesysHost({"tok-1": httpx.Response(202, json={"status": "queued"})})
    with pytest.raises(GenesysApiError):
        query_provider(host, settings, server).submit(make_request(), CALLBACK_URL)
