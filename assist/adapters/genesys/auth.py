"""OAuth client credentials for Genesys Cloud, with one token shared by every process.

The real contract (reference/genesys-cloud.md §1): `POST https://login.<env>/oauth/token`,
HTTP Basic credentials, form body `grant_type=client_credentials`, JSON reply with
`access_token` and `expires_in`. Client-credentials grants have no refresh token, so a new
token is fetched `token_refresh_margin_s` before expiry and whenever an API call answers 401.

The token lives in Redis with a TTL, so the web process and every worker share it and the
token endpoint (300 requests/min per client) sees one fetch per expiry, not one per process.
A Redis lock keeps concurrent fetchers to one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from redis.exceptions import LockError

from assist.adapters.genesys.circuit import OAUTH_TOKEN
from assist.adapters.genesys.errors import (
    GenesysApiError,
    GenesysAuthError,
    GenesysCircuitOpenError,
)
from assist.adapters.genesys.http import ResilientHttp
from assist.logconfig import get_logger
from assist.settings import Settings
from assist.stores.redis_client import RedisConnections

log = get_logger(__name__)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str | None = None
    expires_in: int


class CachedToken(BaseModel):
    access_token: str
    expires_at: float


class TokenProvider:
    def __init__(self, settings: Settings, http: ResilientHttp, redis: RedisConnections) -> None:
        self._settings = settings
        self._http = http
        self._redis = redis
        digest = hashlib.sha256(
            f"{settings.login_base_url}|{settings.genesys_client_id}".encode()
        ).hexdigest()[:32]
        self._key = redis.keys.genesys_token(digest)
        self._lock_key = redis.keys.genesys_token_lock(digest)

    def token(self) -> str:
        """A valid access token, from the shared cache or freshly fetched."""
        cached = self._cached()
        if cached is not None:
            return cached
        # The lock lasts one token request: a process killed while holding it stalls the
        # others for that long, not longer; a fetch that outlives it (retries) only means a
        # second fetcher, and two valid tokens are harmless.
        hold_s = self._settings.genesys_timeout_s + 1
        lock = self._redis.decoded.lock(self._lock_key, timeout=hold_s, blocking_timeout=hold_s)
        try:
            with lock:
                cached = self._cached()
                return cached if cached is not None else self._fetch()
        except LockError:
            # Another process holds the lock too long; fetch ourselves rather than fail a call.
            return self._fetch()

    def invalidate(self, access_token: str) -> None:
        """Drop the cached token if it is still the one that was refused."""
        if self._cached() == access_token:
            self._redis.decoded.delete(self._key)

    def send(
        self,
        method: str,
        url: str,
        *,
        circuit: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with the bearer token (through the retrying client and `circuit`'s breaker);
        on a 401, fetch a new token and send once more. A second 401 is returned: the caller
        reads it as refused."""
        response: httpx.Response | None = None
        for _ in (1, 2):
            token = self.token()
            authorized = {**(headers or {}), "Authorization": f"Bearer {token}"}
            try:
                response = self._http.send(
                    method, url, circuit=circuit, headers=authorized, **kwargs
                )
            except GenesysCircuitOpenError as exc:
                if response is not None:  # the first send was answered 401
                    exc.nothing_sent = False
                raise
            if response.status_code != 401:
                break
            self.invalidate(token)
        assert response is not None
        return response

    def _cached(self) -> str | None:
        raw = self._redis.decoded.get(self._key)
        if not raw:
            return None
        token = CachedToken.model_validate_json(raw)
        if token.expires_at - self._settings.token_refresh_margin_s <= time.time():
            return None
        return token.access_token

    def _fetch(self) -> str:
        settings = self._settings
        if not settings.genesys_client_id:
            raise GenesysAuthError("ASSIST_GENESYS_CLIENT_ID is not set")
        response = self._http.send(
            "POST",
            f"{settings.login_base_url}/oauth/token",
            circuit=OAUTH_TOKEN,
            auth=httpx.BasicAuth(
                settings.genesys_client_id, settings.genesys_client_secret.get_secret_value()
            ),
            data={"grant_type": "client_credentials"},
        )
        if response.status_code in (400, 401, 403):
            raise GenesysAuthError(
                f"token endpoint refused the client credentials ({response.status_code})"
            )
        if response.status_code != 200:
            raise GenesysApiError(
                f"token endpoint answered {response.status_code}", status_code=response.status_code
            )
        try:
            body = TokenResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise GenesysApiError("token endpoint sent an invalid body", status_code=200) from exc
        expires_at = time.time() + body.expires_in
        ttl = int(body.expires_in - settings.token_refresh_margin_s)
        if ttl > 0:
            cached = CachedToken(access_token=body.access_token, expires_at=expires_at)
            self._redis.decoded.set(self._key, cached.model_dump_json(), ex=ttl)
        log.info("genesys.token_fetched", expires_in=body.expires_in)
        return body.access_token
