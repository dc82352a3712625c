"""Callback signatures (Standard Webhooks, shared-secret header) and desk bearer tokens."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from assist.errors import AuthenticationError
from assist.security import CallbackVerifier, DeskAuthenticator
from tests.conftest import CALLBACK_SECRET, DESK_TOKEN, ROTATED_SECRET

BODY = b'{"id":"prov-1","status":"completed","suggestions":[]}'
OTHER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed_headers(
    body: bytes = BODY,
    *,
    secret: str = CALLBACK_SECRET,
    at: datetime | None = None,
    msg_id: str = "msg_2Lx7ERvFqP0",
) -> dict[str, str]:
    when = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


def verifier(*secrets: str, header: str = "", shared: tuple[str, ...] = ()) -> CallbackVerifier:
    return CallbackVerifier(
        [SecretStr(s) for s in (secrets or (CALLBACK_SECRET,))],
        shared_secret_header=header,
        shared_secrets=[SecretStr(s) for s in shared],
    )


def refused(check: CallbackVerifier, body: bytes, headers: dict[str, str]) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        check.verify(body, headers)
    assert caught.value.status_code == 401
    return caught.value


# --- Standard Webhooks -----------------------------------------------------------------------


def test_a_valid_signature_is_accepted() -> None:
    verified = verifier().verify(BODY, signed_headers())
    assert verified.mode == "standard-webhooks"
    assert verified.message_id == "msg_2Lx7ERvFqP0"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in signed_headers().items()}  # e.g. "Webhook-Id"
    assert verifier().verify(BODY, headers).message_id == "msg_2Lx7ERvFqP0"


def test_a_tampered_body_is_refused() -> None:
    headers = signed_headers()
    error = refused(verifier(), BODY.replace(b"completed", b"failed"), headers)
    assert error.code == "invalid_signature"


def test_a_changed_message_id_is_refused() -> None:
    headers = signed_headers() | {"webhook-id": "msg_other"}
    assert refused(verifier(), BODY, headers).code == "invalid_signature"


def test_a_signature_made_with_another_secret_is_refused() -> None:
    error = refused(verifier(), BODY, signed_headers(secret=OTHER_SECRET))
    assert error.code == "invalid_signature"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    headers = signed_headers()
    del headers[missing]
    assert refused(verifier(), BODY, headers).code == "missing_signature"


def test_no_headers_at_all_is_refused() -> None:
    assert refused(verifier(), BODY, {}).code == "missing_signature"


@pytest.mark.parametrize("offset_s", [-310, 310, -3600, 3600])
def test_a_timestamp_outside_five_minutes_is_refused(offset_s: int) -> None:
    at = datetime.now(UTC) + timedelta(seconds=offset_s)
    error = refused(verifier(), BODY, signed_headers(at=at))
    assert error.code == "expired_signature"


@pytest.mark.parametrize("offset_s", [-290, 290])
def test_a_timestamp_inside_five_minutes_is_accepted(offset_s: int) -> None:
    at = datetime.now(UTC) + timedelta(seconds=offset_s)
    assert verifier().verify(BODY, signed_headers(at=at)).mode == "standard-webhooks"


def test_rotation_verifies_with_any_configured_secret() -> None:
    both = verifier(CALLBACK_SECRET, ROTATED_SECRET)
    assert both.verify(BODY, signed_headers(secret=ROTATED_SECRET)).mode == "standard-webhooks"
    assert both.verify(BODY, signed_headers(secret=CALLBACK_SECRET)).mode == "standard-webhooks"
    # Without the rotated secret configured, its signature is not trusted.
    refused(verifier(CALLBACK_SECRET), BODY, signed_headers(secret=ROTATED_SECRET))


def test_one_matching_signature_among_several_is_enough() -> None:
    good = signed_headers()
    bad = signed_headers(secret=OTHER_SECRET)
    headers = good | {
        "webhook-signature": f"{bad['webhook-signature']} {good['webhook-signature']}"
    }
    assert verifier().verify(BODY, headers).mode == "standard-webhooks"


@pytest.mark.parametrize(
    "signature",
    ["v1,not-base64!!", "nonsense", "v1,", "v2,AAAA", "v1,a,b", "v1," + "A" * 44],
)
def test_garbage_signatures_are_a_401_not_a_crash(signature: str) -> None:
    headers = signed_headers() | {"webhook-signature": signature}
    error = refused(verifier(), BODY, headers)
    assert error.code == "invalid_signature"


def test_a_garbage_timestamp_is_refused() -> None:
    headers = signed_headers() | {"webhook-timestamp": "yesterday"}
    assert refused(verifier(), BODY, headers).code == "invalid_signature"


def test_a_non_utf8_body_is_refused() -> None:
    body = b"\xff\xfe\x00not json"
    refused(verifier(), body, signed_headers())


def test_without_any_secret_nothing_verifies() -> None:
    empty = CallbackVerifier([])
    assert refused(empty, BODY, signed_headers()).code == "invalid_signature"


# --- shared-secret header --------------------------------------------------------------------

SHARED_HEADER = "X-Callback-Token"


def test_shared_secret_mode_accepts_the_right_value() -> None:
    check = verifier(header=SHARED_HEADER, shared=("s3cret-1", "s3cret-2"))
    verified = check.verify(BODY, {"x-callback-token": "s3cret-2"})
    assert verified.mode == "shared-secret"
    assert verified.message_id is None


def test_shared_secret_mode_refuses_a_wrong_value() -> None:
    check = verifier(header=SHARED_HEADER, shared=("s3cret-1",))
    error = refused(check, BODY, {SHARED_HEADER: "s3cret-2"})
    assert error.code == "invalid_signature"
    refused(check, BODY, {SHARED_HEADER: ""})
    refused(check, BODY, {SHARED_HEADER: "s3cret-1 "})


def test_shared_secret_mode_keeps_a_webhook_id_for_dedup() -> None:
    check = verifier(header=SHARED_HEADER, shared=("s3cret-1",))
    verified = check.verify(BODY, {SHARED_HEADER: "s3cret-1", "webhook-id": "msg_9"})
    assert verified.message_id == "msg_9"


def test_without_the_shared_header_standard_webhooks_still_applies() -> None:
    check = verifier(header=SHARED_HEADER, shared=("s3cret-1",))
    assert check.verify(BODY, signed_headers()).mode == "standard-webhooks"
    assert refused(check, BODY, {}).code == "missing_signature"
    assert refused(check, BODY, signed_headers(secret=OTHER_SECRET)).code == "invalid_signature"


def test_the_shared_header_is_ignored_when_the_mode_is_off() -> None:
    # Mode off: a header that happens to carry a value must not authenticate anything.
    assert refused(verifier(), BODY, {SHARED_HEADER: "anything"}).code == "missing_signature"


# --- desk tokens -----------------------------------------------------------------------------

OTHER_TOKEN = "desk-other-token"


@pytest.fixture
def desk() -> DeskAuthenticator:
    return DeskAuthenticator([SecretStr(DESK_TOKEN), SecretStr(OTHER_TOKEN), SecretStr("")])


def test_a_bearer_token_is_accepted(desk: DeskAuthenticator) -> None:
    assert desk.authenticate(f"Bearer {DESK_TOKEN}")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_scheme_is_case_insensitive(desk: DeskAuthenticator, scheme: str) -> None:
    assert desk.authenticate(f"{scheme} {DESK_TOKEN}") == desk.authenticate(f"Bearer {DESK_TOKEN}")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Basic {DESK_TOKEN}",
        DESK_TOKEN,
        f"Bearer {DESK_TOKEN}x",
        f"Bearer {DESK_TOKEN[:-1]}",
    ],
)
def test_wrong_or_missing_tokens_are_refused(
    desk: DeskAuthenticator, authorization: str | None
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        desk.authenticate(authorization)
    assert caught.value.status_code == 401
    assert caught.value.code == "unauthorized"


def test_an_empty_configured_token_does_not_open_the_door() -> None:
    only_empty = DeskAuthenticator([SecretStr("")])
    for attempt in ("Bearer  ", "Bearer x"):
        with pytest.raises(AuthenticationError):
            only_empty.authenticate(attempt)


def test_the_scope_is_stable_per_token_and_differs_between_tokens(
    desk: DeskAuthenticator,
) -> None:
    first = desk.authenticate(f"Bearer {DESK_TOKEN}")
    again = desk.authenticate(f"Bearer {DESK_TOKEN}")
    other = desk.authenticate(f"Bearer {OTHER_TOKEN}")
    assert first == again
    assert first != other
    # A second authenticator with the same tokens (another process) gives the same scope.
    assert DeskAuthenticator([SecretStr(DESK_TOKEN)]).authenticate(f"Bearer {DESK_TOKEN}") == first
    # The scope is used in Redis keys and logs: it must not reveal the token.
    assert DESK_TOKEN not in first


def test_the_query_token_is_used_only_when_passed(desk: DeskAuthenticator) -> None:
    with pytest.raises(AuthenticationError):
        desk.authenticate(None)
    assert desk.authenticate(None, DESK_TOKEN) == desk.authenticate(f"Bearer {DESK_TOKEN}")
    with pytest.raises(AuthenticationError):
        desk.authenticate(None, "wrong-token")


def test_a_bearer_header_wins_over_the_query_token(desk: DeskAuthenticator) -> None:
    with pytest.raises(AuthenticationError):
        desk.authenticate("Bearer wrong-token", DESK_TOKEN)
    assert desk.authenticate(f"Bearer {OTHER_TOKEN}", DESK_TOKEN) == desk.authenticate(
        f"Bearer {OTHER_TOKEN}"
    )


def test_desk_tokens_are_held_only_as_digests() -> None:
    import hashlib

    holder = DeskAuthenticator([SecretStr("plain-desk-token-1")])
    held = repr(vars(holder)).encode()
    assert b"plain-desk-token-1" not in held
    assert hashlib.sha256(b"plain-desk-token-1").digest() in holder._hashes


def test_a_desk_token_may_be_configured_by_its_digest() -> None:
    import hashlib

    configured = "sha256:" + hashlib.sha256(b"agent-desk-42").hexdigest()
    holder = DeskAuthenticator([SecretStr(configured)])
    assert holder.authenticate("Bearer agent-desk-42")
    with pytest.raises(AuthenticationError):
        holder.authenticate(f"Bearer {configured}")  # the digest itself is not a token


def test_a_malformed_digest_is_refused_at_start() -> None:
    from assist.settings import Settings

    with pytest.raises(ValueError, match="64 hex digits"):
        Settings(_env_file=None, desk_tokens="sha256:abc")
