"""Authentication of desk calls (bearer tokens) and provider callbacks (signatures).

Callbacks are verified on the raw body, before anything parses it:

- Standard Webhooks (default): `webhook-id`, `webhook-timestamp`, `webhook-signature`, checked
  by the maintained `standardwebhooks` library (HMAC-SHA256, constant-time comparison, ±5 min
  in both directions) against every configured secret, so secrets can be rotated.
- Shared-secret header (opt-in): for senders that cannot sign, such as a Genesys Web Services
  Data Action. Only active when `ASSIST_CALLBACK_SHARED_SECRET_HEADER` is set.

Unsigned callbacks are never accepted by default.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr
from standardwebhooks import Webhook

from assist.errors import AuthenticationError


def digest(value: str) -> str:
    """A short, stable, non-reversible id for a secret-ish value (keys and log fields)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


#: A desk token given as its digest (`sha256:<64 hex>`), so the plain token need not be
#: stored in the environment at all.
HASHED_TOKEN_PREFIX = "sha256:"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class DeskAuthenticator:
    """Desk tokens, kept only as SHA-256 digests and compared in constant time."""

    def __init__(self, tokens: Sequence[SecretStr]) -> None:
        self._hashes: list[bytes] = []
        for token in tokens:
            value = token.get_secret_value()
            if not value:
                continue
            if value.startswith(HASHED_TOKEN_PREFIX):
                try:
                    hashed = bytes.fromhex(value[len(HASHED_TOKEN_PREFIX) :])
                except ValueError:
                    hashed = b""
                if len(hashed) != hashlib.sha256().digest_size:
                    raise ValueError("a sha256: desk token needs 64 hex digits")
                self._hashes.append(hashed)
            else:
                self._hashes.append(token_hash(value))

    def authenticate(self, authorization: str | None, query_token: str | None = None) -> str:
        """Return the caller's scope (a digest of its token); raise `AuthenticationError`."""
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if token is None and query_token:
            token = query_token
        if not token:
            raise AuthenticationError("missing desk token: send 'Authorization: Bearer <token>'")
        candidate = token_hash(token)
        # Compare against every digest, without stopping early, so timing says nothing.
        matched = False
        for known in self._hashes:
            matched |= hmac.compare_digest(candidate, known)
        if not matched:
            raise AuthenticationError("invalid desk token")
        return digest(token)


@dataclass(frozen=True)
class VerifiedCallback:
    mode: str  # "standard-webhooks" or "shared-secret"
    message_id: str | None


class CallbackVerifier:
    def __init__(
        self,
        secrets: Sequence[SecretStr],
        *,
        shared_secret_header: str = "",
        shared_secrets: Sequence[SecretStr] = (),
    ) -> None:
        self._webhooks = [Webhook(s.get_secret_value()) for s in secrets]
        self._shared_header = shared_secret_header.lower()
        self._shared = [s.get_secret_value().encode() for s in shared_secrets]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedCallback:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self._shared_header and self._shared_header in lowered:
            presented = lowered[self._shared_header].encode()
            matched = False
            for secret in self._shared:
                matched |= hmac.compare_digest(presented, secret)
            if not matched:
                raise AuthenticationError("invalid shared secret", code="invalid_signature")
            return VerifiedCallback("shared-secret", lowered.get("webhook-id"))
        if not all(h in lowered for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
            raise AuthenticationError(
                "missing webhook-id, webhook-timestamp or webhook-signature header",
                code="missing_signature",
            )
        if not self._webhooks:
            raise AuthenticationError("no callback secret is configured", code="invalid_signature")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            # Standard Webhooks signs the payload as text (the library decodes it as UTF-8
            # first), and a callback is JSON, which is UTF-8: such a body cannot be verified.
            raise AuthenticationError(
                "the body is not UTF-8 text, so its signature cannot be verified",
                code="invalid_signature",
            ) from None
        reason = "signature does not match"
        for webhook in self._webhooks:
            try:
                webhook.verify(body, lowered, json_parse=False)
            except Exception as exc:  # the library raises several types for bad input
                text = str(exc)
                if "too old" in text or "too new" in text:
                    raise AuthenticationError(
                        f"webhook timestamp outside the ±300 s window ({text.lower()})",
                        code="expired_signature",
                    ) from exc
                continue
            return VerifiedCallback("standard-webhooks", lowered["webhook-id"])
        raise AuthenticationError(reason, code="invalid_signature")
