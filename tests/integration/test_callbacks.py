"""The callback receiver against real Redis: authentication, bad input, dedup, late callbacks.

Callbacks here are signed by the test (not the emulator) so each case controls exactly what
arrives. Requests are created through the real trigger API with the emulator told to drop
its own callbacks.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from standardwebhooks import Webhook

from assist.security import digest
from assist.services.suggestions import (
    CallbackPayload,
    callback_record,
    write_callback_records,
)
from assist.stores.callbacks import RANK_RETRY
from tests.conftest import CALLBACK_SECRET, ROTATED_SECRET, wait_for
from tests.integration.conftest import System

SUGGESTION = {
    "id": "kb-x-1",
    "title": "Refunds",
    "content": "How refunds work.",
    "confidence": 0.8,
    "knowledge_source_id": "kb-billing",
    "metadata": {"tags": ["billing"]},
}


def signed(
    body: str | bytes,
    *,
    secret: str = CALLBACK_SECRET,
    msg_id: str | None = None,
    at: float | None = None,
) -> dict[str, str]:
    text = body.decode() if isinstance(body, bytes) else body
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = time.time() if at is None else at
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), text),
    }


def post_callback(
    system: System, body: str, headers: dict[str, str], query: str = ""
) -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/v1/callbacks/genesys{query}", content=body, headers=headers, timeout=10
    )


def submitted_request(system: System, **trigger: Any) -> tuple[str, str]:
    """A request the provider accepted but will never call back for: (request id, provider id)."""
    system.emulator.post("/emulator/faults", json={"drop_callbacks": True})
    request_id = system.trigger(transcript="refund please", **trigger).json()["request_id"]
    system.run_jobs()
    view = wait_for(lambda: system.services.requests.get(request_id))
    assert view.status.value == "submitted"
    assert view.provider_request_id is not None
    return request_id, view.provider_request_id


def completed_body(provider_id: str, status: str = "completed", **extra: Any) -> str:
    return json.dumps({"id": provider_id, "status": status, "suggestions": [SUGGESTION], **extra})


def queued_jobs(system: System) -> int:
    """Ranking jobs waiting on the live queue."""
    jobs = system.services.queue.queue.get_jobs()
    return sum(1 for job in jobs if job.func_name == "workers.jobs.rank_callback")


def audit_types(system: System) -> list[str]:
    path = Path(system.settings.audit_log_path)
    return [json.loads(x)["type"] for x in path.read_text().splitlines()] if path.exists() else []


def test_signed_completed_callback_is_queued_then_ranked(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    response = post_callback(system, body, signed(body))
    assert response.status_code == 202
    assert response.json() == {"status": "queued", "request_id": request_id}
    system.run_jobs()
    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert view["status"] == "completed"
    assert [s["id"] for s in view["suggestions"]] == ["kb-x-1"]


@pytest.mark.parametrize(
    ("label", "make_headers", "code"),
    [
        ("no signature", lambda body: {"Content-Type": "application/json"}, "missing_signature"),
        ("wrong secret", lambda body: signed(body, secret=ROTATED_SECRET), "invalid_signature"),
        ("too old", lambda body: signed(body, at=time.time() - 310), "expired_signature"),
        ("too new", lambda body: signed(body, at=time.time() + 310), "expired_signature"),
        (
            "garbage signature",
            lambda body: {**signed(body), "webhook-signature": "v1,@@not-base64@@"},
            "invalid_signature",
        ),
    ],
)
def test_bad_signatures_are_401_and_enqueue_nothing(
    system: System, label: str, make_headers: Callable[[str], dict[str, str]], code: str
) -> None:
    request_id, provider_id = submitted_request(system)
    depth = queued_jobs(system)
    body = completed_body(provider_id)
    response = post_callback(system, body, make_headers(body))
    assert response.status_code == 401, label
    assert response.json()["error"]["code"] == code
    assert queued_jobs(system) == depth
    assert "callback_received" not in audit_types(system)
    assert system.services.requests.get(request_id).status.value == "submitted"  # type: ignore[union-attr]


def test_tampered_body_is_refused(system: System) -> None:
    _, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    headers = signed(body)
    tampered = body.replace("0.8", "0.99")
    assert post_callback(system, tampered, headers).status_code == 401


def test_rotated_secrets_all_verify(system_factory: Callable[..., System]) -> None:
    # The new secret signs first; the emulator still signs with the old one, which must verify.
    system = system_factory(callback_secrets=f"{ROTATED_SECRET},{CALLBACK_SECRET}")
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    assert post_callback(system, body, signed(body, secret=ROTATED_SECRET)).status_code == 202
    system.run_jobs()
    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "completed"


def test_shared_secret_header_mode_is_opt_in(system_factory: Callable[..., System]) -> None:
    system = system_factory(
        callback_shared_secret_header="X-Assist-Callback-Secret",
        callback_shared_secrets="data-action-secret-1",
    )
    _, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    plain = {"Content-Type": "application/json"}
    wrong = post_callback(system, body, {**plain, "X-Assist-Callback-Secret": "nope"})
    assert wrong.status_code == 401
    assert post_callback(system, body, plain).status_code == 401  # still no unsigned callbacks
    right = post_callback(
        system, body, {**plain, "X-Assist-Callback-Secret": "data-action-secret-1"}
    )
    assert right.status_code == 202


def test_redeliveries_and_second_finals_are_duplicates(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    headers = signed(body, msg_id="msg_same")
    assert post_callback(system, body, headers).status_code == 202
    # Same webhook-id, fresh signature (a sender's retry), four more times.
    for _ in range(4):
        again = post_callback(system, body, signed(body, msg_id="msg_same"))
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
    # Another message id, same provider request, final again: still one ranking.
    other = post_callback(system, body, signed(body))
    assert other.status_code == 200 and other.json()["status"] == "duplicate"
    assert queued_jobs(system) == 1
    system.run_jobs()
    assert audit_types(system).count("suggestions_ranked") == 1
    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "completed"


def test_non_final_statuses_are_acknowledged_without_a_job(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    for status in ("queued", "processing"):
        body = json.dumps({"id": provider_id, "status": status, "suggestions": []})
        response = post_callback(system, body, signed(body))
        assert response.status_code == 202
        assert response.json()["status"] == "acknowledged"
    assert queued_jobs(system) == 0
    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "submitted"


def test_provider_failure_marks_the_request_failed(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = json.dumps({"id": provider_id, "status": "failed", "error": "index unavailable"})
    assert post_callback(system, body, signed(body)).status_code == 202
    system.run_jobs()
    view = system.client.get(f"/v1/suggestions/{request_id}").json()
    assert view["status"] == "failed"
    assert "index unavailable" in view["error"]


def test_unknown_request_is_404(system: System) -> None:
    body = completed_body("q_never_issued")
    response = post_callback(system, body, signed(body))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_request"
    hinted = post_callback(system, body, signed(body), query="?request_id=req_unknown")
    assert hinted.status_code == 404


def test_a_hint_cannot_redirect_a_callback_to_another_providers_request(system: System) -> None:
    request_id, _ = submitted_request(system)
    body = completed_body("q_some_other_provider_request")
    response = post_callback(system, body, signed(body), query=f"?request_id={request_id}")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"id": "x", "status": "completed"', "application/json", 400, "malformed_json"),
        ("[1, 2]", "application/json", 400, "malformed_json"),
        ('{"id": "x", "status": "completed"}', "text/plain", 415, "unsupported_media_type"),
        ('{"id": "x", "status": "done"}', "application/json", 422, "validation_failed"),
        (
            '{"id": "x", "status": "completed", "suggestions": [{"id": "a", "title": "t", '
            '"content": "c", "confidence": 1.5, "knowledge_source_id": "k"}]}',
            "application/json",
            422,
            "validation_failed",
        ),
    ],
)
def test_signed_but_bad_bodies(
    system: System, body: str, content_type: str, status: int, code: str
) -> None:
    headers = {**signed(body), "Content-Type": content_type}
    response = post_callback(system, body, headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    if status == 422:
        assert error["details"] and all(d["field"] for d in error["details"])
    assert queued_jobs(system) == 0


def test_oversized_callback_is_413(system_factory: Callable[..., System]) -> None:
    system = system_factory(max_body_bytes=2048)
    body = completed_body("q_big", padding="x" * 4000)
    response = post_callback(system, body, signed(body))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_late_callback_for_an_expired_request_is_ignored(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory(request_expiry_s=1)
    request_id, provider_id = submitted_request(system)
    view = wait_for(
        lambda: (
            (v := system.client.get(f"/v1/suggestions/{request_id}").json())["status"] == "expired"
            and v
        ),
        timeout_s=5,
    )
    assert view["error"]
    assert "request_expired" in audit_types(system)
    body = completed_body(provider_id)
    late = post_callback(system, body, signed(body))
    assert late.status_code == 200
    assert late.json()["status"] == "ignored"
    assert queued_jobs(system) == 0
    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "expired"


def test_callback_while_redis_is_unreachable_is_503(system_factory: Callable[..., System]) -> None:
    system = system_factory(redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5)
    body = completed_body("q_any")
    response = post_callback(system, body, signed(body))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "store_unavailable"


# --- replay protection ------------------------------------------------------------------------


def callback_records(system: System) -> list[dict[str, Any]]:
    return system.audit("callback_received")


def test_a_captured_delivery_replayed_byte_for_byte_is_processed_once(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    captured = signed(body)
    assert post_callback(system, body, captured).status_code == 202
    replay = post_callback(system, body, captured)
    # The design's contract: 200 duplicate, no second job.
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate", "request_id": request_id}
    assert queued_jobs(system) == 1
    system.run_jobs()
    assert post_callback(system, body, captured).json()["status"] == "duplicate"
    assert len(system.audit("suggestions_ranked")) == 1
    # Every delivery is recorded, duplicates too, in the order they arrived; the worker
    # writes the records the callback script staged.
    system.run_jobs()
    assert [r["data"]["duplicate"] for r in callback_records(system)] == [False, True, True]
    # The webhook-id is remembered longer than a signature stays valid (±300 s), so any replay
    # the signature check lets through is a known id.
    redis = system.services.redis
    key = redis.keys.callback_message(digest(captured["webhook-id"]))
    assert redis.decoded.ttl(key) > 300


def test_concurrent_copies_of_one_delivery_are_processed_once(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    headers = signed(body)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post_callback(system, body, headers), range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert queued_jobs(system) == 1
    system.run_jobs()
    assert len(system.audit("suggestions_ranked")) == 1
    assert system.client.get(f"/v1/suggestions/{request_id}").json()["status"] == "completed"


def test_a_captured_delivery_cannot_be_replayed_under_a_new_id_or_time(system: System) -> None:
    """The id and the timestamp are signed: changing either to dodge the dedup or the
    ±300 s window breaks the signature."""
    _, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    old = time.time() - 200
    captured = signed(body, msg_id="msg_captured", at=old)
    new_id = {**captured, "webhook-id": "msg_fresh"}
    new_time = {**captured, "webhook-timestamp": str(int(time.time()))}
    for label, headers in (("new id", new_id), ("new timestamp", new_time)):
        response = post_callback(system, body, headers)
        assert response.status_code == 401, label
        assert response.json()["error"]["code"] == "invalid_signature"
    # A signature made for another body does not carry over to this one.
    other = completed_body(provider_id, status="failed")
    assert post_callback(system, body, signed(other)).status_code == 401
    assert queued_jobs(system) == 0
    assert callback_records(system) == []


# --- the acknowledgement script -----------------------------------------------------------------


def test_the_rank_job_the_script_writes_is_the_one_rq_would_write(system: System) -> None:
    """The script writes the RQ job hash itself (one round trip); it must be RQ's own."""
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    assert post_callback(system, body, signed(body)).status_code == 202
    raw = system.services.redis.raw
    ours = {k.decode(): v for k, v in raw.hgetall(f"rq:job:rank-{request_id}").items()}
    # What the handler enqueued before the script: the validated payload, as JSON.
    payload = CallbackPayload.model_validate_json(body).model_dump(mode="json")
    received_at = json.loads(zlib_free_data(ours["data"]))[2][2]
    reference = system.services.queue.queue.enqueue_call(
        "workers.jobs.rank_callback",
        args=(request_id, payload, received_at),
        job_id="reference-job",
        retry=RANK_RETRY,
        result_ttl=600,
        failure_ttl=7 * 24 * 3600,
    )
    theirs = {k.decode(): v for k, v in raw.hgetall("rq:job:reference-job").items()}
    raw.lrem(system.services.queue.queue.key, 0, "reference-job")
    per_job = {"created_at", "enqueued_at", "data", "description"}
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if k not in per_job} == {
        k: v for k, v in theirs.items() if k not in per_job
    }
    job = Job.fetch(f"rank-{request_id}", connection=raw, serializer=JSONSerializer)
    assert job.func_name == "workers.jobs.rank_callback"
    assert list(job.args) == list(reference.args)
    assert job.kwargs == {}
    assert (job.retries_left, job.retry_intervals) == (3, [0, 5, 30])
    assert job.get_status() == "queued"
    assert raw.sismember("rq:queues", system.services.queue.queue.key)
    assert f"rank-{request_id}".encode() in raw.lrange(system.services.queue.queue.key, 0, -1)


def zlib_free_data(data: bytes) -> bytes:
    """The job data as RQ reads it: zlib-compressed (RQ) or plain JSON (the script)."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


def test_callback_records_are_staged_in_redis_and_written_by_the_worker(system: System) -> None:
    request_id, provider_id = submitted_request(system)
    body = completed_body(provider_id)
    headers = signed(body)
    assert post_callback(system, body, headers).status_code == 202
    assert post_callback(system, body, headers).status_code == 200
    acks = system.services.callback_acks
    # Nothing in the audit log yet: the request wrote no file, the records wait in Redis.
    assert callback_records(system) == []
    staged = acks.head(10)
    assert [(e["request_id"], e["duplicate"]) for e in staged] == [
        (request_id, False),
        (request_id, True),
    ]
    system.run_jobs()
    records = callback_records(system)
    assert [r["data"]["duplicate"] for r in records] == [False, True]
    assert records[0]["event_id"] == staged[0]["event_id"]
    assert records[0]["conversation_id"] == "conv-1"
    assert records[0]["data"]["callback_status"] == "completed"
    assert records[0]["data"]["suggestions"] == 1
    assert records[0]["data"]["auth_mode"] == "standard-webhooks"
    assert records[0]["data"]["latency_ms"] >= 0
    assert acks.pending() == 0
    assert system.services.analytics.counters()["callback_received"] == 2


def test_a_records_writer_that_died_mid_batch_leaves_no_line_twice(system: System) -> None:
    _, first_provider = submitted_request(system)
    _, second_provider = submitted_request(system)
    for provider_id in (first_provider, second_provider):
        body = completed_body(provider_id)
        assert post_callback(system, body, signed(body)).status_code == 202
    acks = system.services.callback_acks
    # A writer claimed both records and wrote the first one's line, then died.
    entries = acks.head(10)
    assert len(entries) == 2
    acks.claim(2)
    system.services.recorder.record_many([callback_record(entries[0])])
    assert write_callback_records(system.services) == 2
    ids = [r["event_id"] for r in callback_records(system)]
    assert sorted(ids) == sorted(e["event_id"] for e in entries)
    assert acks.claimed() == 0 and acks.pending() == 0
