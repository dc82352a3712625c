"""Integration tests of the emulator's Genesys Cloud Knowledge search and results webhook.

Everything goes over real loopback HTTP to the session emulator of `conftest.py`
(`emulator_control` resets it around each test), the way our server's adapters talk to it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from emulator.knowledge import load_articles
from tests.conftest import CLIENT_ID, CLIENT_SECRET

SEARCH = "/api/v2/knowledge/knowledgebases/{kb}/documents/search"
RESULTS = "/results/suggestions"
#: Words of kb-billing articles (dispute, charge, bill, refund, payment) and of the password
#: article that kb-accounts and kb-tech hold (password, reset), so a search that leaked across
#: knowledge bases would show it.
BILLING_QUERY = "Customer disputes a charge on the bill, wants a refund; also a password reset"
CONTENT = {(a.knowledge_source_id, a.id): a.content for a in load_articles()}
BILLING_IDS = {article_id for kb, article_id in CONTENT if kb == "kb-billing"}


# --- helpers ---------------------------------------------------------------------------------


def get_token(client: httpx.Client) -> str:
    response = client.post(
        "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "client_credentials"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def search(
    client: httpx.Client,
    token: str | None,
    body: Any,
    kb: str = "kb-billing",
    params: dict[str, str] | None = None,
) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    return client.post(SEARCH.format(kb=kb), json=body, headers=headers, params=params)


def update_search(
    client: httpx.Client, token: str | None, search_id: str, body: Any, kb: str = "kb-billing"
) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    return client.patch(f"{SEARCH.format(kb=kb)}/{search_id}", json=body, headers=headers)


def post_results(
    client: httpx.Client, token: str | None, body: Any, idempotency_key: str | None = None
) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post(RESULTS, json=body, headers=headers)


def results_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": "req-1",
        "conversation_id": "conv-1",
        "suggestions": [{"id": "kb-art-001", "confidence": 0.9}],
    }
    body.update(overrides)
    return body


def assert_genesys_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["message"]
    assert body["contextId"] == response.headers["ININ-Correlation-Id"]


def set_faults(client: httpx.Client, **faults: Any) -> None:
    response = client.post("/emulator/faults", json=faults)
    assert response.status_code == 200, response.text


def records(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/emulator/records").json()
    return body


@pytest.fixture
def token(emulator_control: httpx.Client) -> str:
    return get_token(emulator_control)


# --- knowledge search ------------------------------------------------------------------------


def test_search_returns_that_knowledge_base_only_best_first_with_variations(
    emulator_control: httpx.Client, token: str
) -> None:
    client = emulator_control

    response = search(
        client, token, {"query": BILLING_QUERY}, params={"expand": "documentVariations"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["ININ-Correlation-Id"]
    assert "inin-ratelimit-count" in response.headers
    body = response.json()
    uuid.UUID(body["searchId"])
    assert body["query"] == BILLING_QUERY
    assert (body["pageSize"], body["pageNumber"]) == (10, 1)
    results = body["results"]
    ids = [r["document"]["id"] for r in results]
    # Only kb-billing documents: the password article lives in kb-accounts and kb-tech.
    assert ids and set(ids) <= BILLING_IDS
    assert "kb-art-004" not in ids
    assert ids[0] == "kb-art-001"  # dispute + charge + bill: the full-overlap article
    confidences = [r["confidence"] for r in results]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0 < c <= 1 for c in confidences)
    assert body["total"] == len(results)
    assert body["pageCount"] == 1
    for result in results:
        document = result["document"]
        assert document["state"] == "Published"
        assert document["visible"] is True
        assert document["knowledgeBase"] == {
            "id": "kb-billing",
            "selfUri": "/api/v2/knowledge/knowledgebases/kb-billing",
        }
        assert document["externalUrl"] == f"https://help.northwind.example/{document['id']}"
        assert document["selfUri"].endswith(f"/kb-billing/documents/{document['id']}")
        assert {"name": "billing"} in document["labels"]
        [variation] = document["variations"]
        uuid.UUID(variation["id"])
        [block] = variation["body"]["blocks"]
        assert block["type"] == "Paragraph"
        [text] = block["paragraph"]["blocks"]
        assert text["type"] == "Text"
        assert text["text"]["text"] == CONTENT[("kb-billing", document["id"])]
    # Optional fields the request did not set are left out, as Genesys Cloud does.
    assert "conversationContext" not in body
    assert "confidenceThreshold" not in body
    [record] = records(client)["knowledge_searches"]
    assert record == {
        "knowledge_base_id": "kb-billing",
        "status_code": 200,
        "search_id": body["searchId"],
        "body": {"query": BILLING_QUERY},
    }


def test_search_without_expand_has_no_variations_and_is_deterministic(
    emulator_control: httpx.Client, token: str
) -> None:
    first = search(emulator_control, token, {"query": BILLING_QUERY}).json()
    second = search(emulator_control, token, {"query": BILLING_QUERY}).json()

    assert first["results"]
    assert all("variations" not in r["document"] for r in first["results"])
    assert first["results"] == second["results"]
    assert first["searchId"] != second["searchId"]


def test_search_same_query_differs_by_knowledge_base(
    emulator_control: httpx.Client, token: str
) -> None:
    accounts = search(emulator_control, token, {"query": "password reset"}, kb="kb-accounts")
    tech = search(emulator_control, token, {"query": "password reset"}, kb="kb-tech")

    accounts_docs = [r["document"] for r in accounts.json()["results"]]
    tech_docs = [r["document"] for r in tech.json()["results"]]
    assert {d["knowledgeBase"]["id"] for d in accounts_docs} == {"kb-accounts"}
    assert [d["id"] for d in tech_docs] == ["kb-art-004"]
    assert tech_docs[0]["knowledgeBase"]["id"] == "kb-tech"
    assert "kb-art-004" in [d["id"] for d in accounts_docs]
    assert {"name": "tech-support"} in tech_docs[0]["labels"]


def test_search_pages(emulator_control: httpx.Client, token: str) -> None:
    everything = search(emulator_control, token, {"query": BILLING_QUERY}).json()
    assert everything["total"] >= 3
    all_ids = [r["document"]["id"] for r in everything["results"]]

    second = search(
        emulator_control, token, {"query": BILLING_QUERY, "pageSize": 2, "pageNumber": 2}
    ).json()
    beyond = search(
        emulator_control, token, {"query": BILLING_QUERY, "pageSize": 2, "pageNumber": 99}
    ).json()

    assert (second["pageSize"], second["pageNumber"]) == (2, 2)
    assert second["total"] == everything["total"]
    assert second["pageCount"] == -(-everything["total"] // 2)
    assert [r["document"]["id"] for r in second["results"]] == all_ids[2:4]
    assert beyond["results"] == []
    assert beyond["total"] == everything["total"]


def test_confidence_threshold_filters_and_context_is_echoed(
    emulator_control: httpx.Client, token: str
) -> None:
    everything = search(emulator_control, token, {"query": BILLING_QUERY}).json()
    confidences = [r["confidence"] for r in everything["results"]]
    # A threshold between the best and the worst result keeps some and drops others.
    threshold = (confidences[0] + confidences[-1]) / 2
    context = {"conversationId": "conv-42", "mediaType": "Voice", "queueId": "q-billing"}

    response = search(
        emulator_control,
        token,
        {
            "query": BILLING_QUERY,
            "confidenceThreshold": threshold,
            "queryType": "AutoSearch",
            "conversationContext": context,
            "sortBy": "ConfidenceScore",  # other request fields are tolerated
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    kept = [r["confidence"] for r in body["results"]]
    assert kept == [c for c in confidences if c >= threshold]
    assert 0 < len(kept) < len(confidences)
    assert body["total"] == len(kept)
    assert body["confidenceThreshold"] == threshold
    assert body["queryType"] == "AutoSearch"
    assert body["conversationContext"] == context

    none_left = search(
        emulator_control, token, {"query": BILLING_QUERY, "confidenceThreshold": 1.0}
    ).json()
    assert (none_left["results"], none_left["total"], none_left["pageCount"]) == ([], 0, 0)


def test_search_unknown_knowledge_base_is_404(emulator_control: httpx.Client, token: str) -> None:
    response = search(emulator_control, token, {"query": BILLING_QUERY}, kb="kb-nope")

    assert_genesys_error(response, 404, "not.found")
    assert "kb-nope" in response.json()["message"]
    [record] = records(emulator_control)["knowledge_searches"]
    assert (record["knowledge_base_id"], record["status_code"]) == ("kb-nope", 404)
    assert record["search_id"] is None


@pytest.mark.parametrize(
    "body",
    [{}, {"query": ""}, {"query": "   \n\t"}, {"query": "x" * 1001}, {"query": None}],
    ids=["missing", "empty", "blank", "too-long", "null"],
)
def test_search_missing_or_blank_query_is_400(
    emulator_control: httpx.Client, token: str, body: dict[str, Any]
) -> None:
    response = search(emulator_control, token, body)

    assert_genesys_error(response, 400, "bad.request")
    assert "query" in response.json()["message"]
    assert records(emulator_control)["knowledge_searches"][0]["status_code"] == 400


def test_search_query_of_1000_characters_after_stripping_is_accepted(
    emulator_control: httpx.Client, token: str
) -> None:
    response = search(emulator_control, token, {"query": "  " + "b" * 1000 + "  "})

    assert response.status_code == 200, response.text
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("query", 42),
        ("pageSize", "10"),
        ("pageSize", True),
        ("pageSize", 0),
        ("pageSize", 31),
        ("pageNumber", 0),
        ("pageNumber", 1.5),
        ("queryType", "Fuzzy"),
        ("confidenceThreshold", "high"),
        ("confidenceThreshold", 1.5),
        ("conversationContext", "conv-1"),
        ("conversationContext", {"mediaType": "Voice"}),
        ("conversationContext", {"conversationId": 7}),
    ],
    ids=repr,
)
def test_search_wrong_types_are_400_naming_the_field(
    emulator_control: httpx.Client, token: str, field: str, value: Any
) -> None:
    body: dict[str, Any] = {"query": BILLING_QUERY}
    body[field] = value

    response = search(emulator_control, token, body)

    assert_genesys_error(response, 400, "bad.request")
    assert field in response.json()["message"]


def test_search_non_json_body_and_unknown_expand_are_400(
    emulator_control: httpx.Client, token: str
) -> None:
    not_json = emulator_control.post(
        SEARCH.format(kb="kb-billing"),
        content=b"query=bill",
        headers={**bearer(token), "Content-Type": "text/plain"},
    )
    array = search(emulator_control, token, [{"query": BILLING_QUERY}])
    bad_expand = search(
        emulator_control, token, {"query": BILLING_QUERY}, params={"expand": "everything"}
    )

    assert_genesys_error(not_json, 400, "bad.request")
    assert_genesys_error(array, 400, "bad.request")
    assert_genesys_error(bad_expand, 400, "bad.request")
    assert "expand" in bad_expand.json()["message"]
    assert records(emulator_control)["knowledge_searches"][0]["body"] == "query=bill"


def test_search_requires_a_valid_token(emulator_control: httpx.Client, token: str) -> None:
    client = emulator_control
    missing = search(client, None, {"query": BILLING_QUERY})
    bogus = search(client, "not-a-token", {"query": BILLING_QUERY})
    accepted = search(client, token, {"query": BILLING_QUERY})
    assert client.post("/emulator/revoke-tokens").json()["revoked"] >= 1
    revoked = search(client, token, {"query": BILLING_QUERY})

    for response in (missing, bogus, revoked):
        assert_genesys_error(response, 401, "bad.credentials")
    assert accepted.status_code == 200
    statuses = [r["status_code"] for r in records(client)["knowledge_searches"]]
    assert statuses == [401, 401, 200, 401]


def test_search_update_marks_an_issued_search(emulator_control: httpx.Client, token: str) -> None:
    client = emulator_control
    search_id = search(client, token, {"query": BILLING_QUERY}).json()["searchId"]
    body = {
        "sessionId": "session-1",
        "answered": True,
        "selectedAnswer": {"document": {"id": "kb-art-001"}},
    }

    response = update_search(client, token, search_id, body)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "searchId": search_id,
        "answered": True,
        "selectedAnswer": {"document": {"id": "kb-art-001"}},
    }
    assert response.headers["ININ-Correlation-Id"]
    unanswered = update_search(client, token, search_id, {"answered": False})
    assert unanswered.json() == {"searchId": search_id, "answered": False, "selectedAnswer": None}
    assert records(client)["knowledge_search_updates"] == [
        {
            "knowledge_base_id": "kb-billing",
            "search_id": search_id,
            "status_code": 200,
            "body": body,
        },
        {
            "knowledge_base_id": "kb-billing",
            "search_id": search_id,
            "status_code": 200,
            "body": {"answered": False},
        },
    ]


def test_search_update_unknown_search_is_404(emulator_control: httpx.Client, token: str) -> None:
    client = emulator_control
    search_id = search(client, token, {"query": BILLING_QUERY}).json()["searchId"]

    never_issued = update_search(client, token, str(uuid.uuid4()), {"answered": True})
    other_kb = update_search(client, token, search_id, {"answered": True}, kb="kb-tech")
    unknown_kb = update_search(client, token, search_id, {"answered": True}, kb="kb-nope")

    assert_genesys_error(never_issued, 404, "not.found")
    assert_genesys_error(other_kb, 404, "not.found")
    assert_genesys_error(unknown_kb, 404, "not.found")
    updates = records(client)["knowledge_search_updates"]
    assert [(u["knowledge_base_id"], u["status_code"]) for u in updates] == [
        ("kb-billing", 404),
        ("kb-tech", 404),
        ("kb-nope", 404),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"answered": "yes"},
        {"answered": 1},
        {"answered": True, "sessionId": 5},
        {"answered": True, "selectedAnswer": {"document": {}}},
        {"answered": True, "selectedAnswer": {"document": {"id": ""}}},
        {"answered": True, "selectedAnswer": "kb-art-001"},
        [True],
    ],
    ids=repr,
)
def test_search_update_invalid_body_is_400(
    emulator_control: httpx.Client, token: str, body: Any
) -> None:
    search_id = search(emulator_control, token, {"query": BILLING_QUERY}).json()["searchId"]

    response = update_search(emulator_control, token, search_id, body)

    assert_genesys_error(response, 400, "bad.request")


def test_search_update_requires_a_valid_token(emulator_control: httpx.Client, token: str) -> None:
    search_id = search(emulator_control, token, {"query": BILLING_QUERY}).json()["searchId"]

    missing = update_search(emulator_control, None, search_id, {"answered": True})
    bogus = update_search(emulator_control, "nope", search_id, {"answered": True})

    assert_genesys_error(missing, 401, "bad.credentials")
    assert_genesys_error(bogus, 401, "bad.credentials")


def test_search_and_update_share_the_rest_faults(
    emulator_control: httpx.Client, token: str
) -> None:
    client = emulator_control
    search_id = search(client, token, {"query": BILLING_QUERY}).json()["searchId"]
    set_faults(client, rate_limit_next=2, retry_after_s=4)

    limited_search = search(client, token, {"query": BILLING_QUERY})
    limited_update = update_search(client, token, search_id, {"answered": True})
    accepted = search(client, token, {"query": BILLING_QUERY})

    for response in (limited_search, limited_update):
        assert_genesys_error(response, 429, "too.many.requests")
        assert response.headers["Retry-After"] == "4"
        assert "inin-ratelimit-count" in response.headers
    assert accepted.status_code == 200
    assert client.get("/emulator/faults").json()["rate_limit_next"] == 0

    set_faults(client, server_error_next=1)
    unavailable = update_search(client, token, search_id, {"answered": True})
    updated = update_search(client, token, search_id, {"answered": True})

    assert_genesys_error(unavailable, 503, "service.unavailable")
    assert updated.status_code == 200
    current = records(client)
    assert [s["status_code"] for s in current["knowledge_searches"]] == [200, 429, 200]
    assert [s["search_id"] is None for s in current["knowledge_searches"]] == [False, True, False]
    assert [u["status_code"] for u in current["knowledge_search_updates"]] == [429, 503, 200]


# --- results webhook -------------------------------------------------------------------------


def test_results_receiver_answers_204_and_records(
    emulator_control: httpx.Client, token: str
) -> None:
    body = results_body()

    keyed = post_results(emulator_control, token, body, idempotency_key="idem-123")
    unkeyed = post_results(emulator_control, token, results_body(request_id="req-2"))

    assert keyed.status_code == 204
    assert keyed.content == b""
    assert unkeyed.status_code == 204
    assert records(emulator_control)["results"] == [
        {"status_code": 204, "body": body, "idempotency_key": "idem-123"},
        {"status_code": 204, "body": results_body(request_id="req-2"), "idempotency_key": None},
    ]


def test_results_requires_a_valid_token(emulator_control: httpx.Client, token: str) -> None:
    client = emulator_control
    missing = post_results(client, None, results_body())
    bogus = post_results(client, "not-a-token", results_body())
    accepted = post_results(client, token, results_body())
    assert client.post("/emulator/revoke-tokens").json()["revoked"] >= 1
    revoked = post_results(client, token, results_body(), idempotency_key="k")

    for response in (missing, bogus, revoked):
        assert_genesys_error(response, 401, "bad.credentials")
    assert accepted.status_code == 204
    assert [(r["status_code"], r["idempotency_key"]) for r in records(client)["results"]] == [
        (401, None),
        (401, None),
        (204, None),
        (401, "k"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"suggestions": []},
        {"request_id": "", "suggestions": []},
        {"request_id": 7, "suggestions": []},
        {"request_id": "req-1"},
        {"request_id": "req-1", "suggestions": {"id": "x"}},
        [{"request_id": "req-1", "suggestions": []}],
    ],
    ids=repr,
)
def test_results_invalid_body_is_400(emulator_control: httpx.Client, token: str, body: Any) -> None:
    response = post_results(emulator_control, token, body)

    assert_genesys_error(response, 400, "bad.request")
    assert records(emulator_control)["results"] == [
        {"status_code": 400, "body": body, "idempotency_key": None}
    ]


def test_results_non_json_body_is_400(emulator_control: httpx.Client, token: str) -> None:
    response = emulator_control.post(
        RESULTS, content=b"request_id=1", headers={**bearer(token), "Content-Type": "text/plain"}
    )

    assert_genesys_error(response, 400, "bad.request")
    assert records(emulator_control)["results"][0]["body"] == "request_id=1"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("results_rate_limit_next", 429, "too.many.requests"),
        ("results_forbidden_next", 403, "not.authorized"),
        ("results_unauthorized_next", 401, "bad.credentials"),
        ("results_error_next", 503, "service.unavailable"),
    ],
)
def test_results_fault_answers_once_then_204(
    emulator_control: httpx.Client, token: str, fault: str, status: int, code: str
) -> None:
    client = emulator_control
    set_faults(client, **{fault: 1, "retry_after_s": 9})

    faulted = post_results(client, token, results_body(), idempotency_key="same-key")
    retried = post_results(client, token, results_body(), idempotency_key="same-key")

    assert_genesys_error(faulted, status, code)
    if status == 429:
        assert faulted.headers["Retry-After"] == "9"
    else:
        assert "Retry-After" not in faulted.headers
    assert retried.status_code == 204
    assert client.get("/emulator/faults").json()[fault] == 0
    assert records(client)["results"] == [
        {"status_code": status, "body": results_body(), "idempotency_key": "same-key"},
        {"status_code": 204, "body": results_body(), "idempotency_key": "same-key"},
    ]


def test_results_fault_counts_and_independence(emulator_control: httpx.Client, token: str) -> None:
    client = emulator_control
    # The generic REST faults leave the results webhook alone...
    set_faults(client, rate_limit_next=1, server_error_next=1)
    assert post_results(client, token, results_body()).status_code == 204
    assert client.get("/emulator/faults").json()["rate_limit_next"] == 1
    set_faults(client, rate_limit_next=0, server_error_next=0)

    # ...N means the next N calls; the 401/403 faults wait for a call with a valid token.
    set_faults(client, results_unauthorized_next=2, results_forbidden_next=1)
    statuses = [
        post_results(client, None, results_body()).status_code,
        post_results(client, token, results_body()).status_code,
        post_results(client, token, results_body()).status_code,
        post_results(client, token, results_body()).status_code,
        post_results(client, token, results_body()).status_code,
    ]

    assert statuses == [401, 401, 401, 403, 204]
    faults = client.get("/emulator/faults").json()
    assert (faults["results_unauthorized_next"], faults["results_forbidden_next"]) == (0, 0)


@pytest.mark.parametrize(
    "faults",
    [
        {"results_rate_limit_next": "1"},
        {"results_error_next": -1},
        {"results_forbidden_next": True},
        {"results_unauthorised_next": 1},
    ],
    ids=repr,
)
def test_results_faults_are_strict(emulator_control: httpx.Client, faults: dict[str, Any]) -> None:
    response = emulator_control.post("/emulator/faults", json=faults)

    assert response.status_code == 400
    current = emulator_control.get("/emulator/faults").json()
    assert all(
        current[name] == 0
        for name in (
            "results_rate_limit_next",
            "results_error_next",
            "results_forbidden_next",
            "results_unauthorized_next",
        )
    )


# --- reset -----------------------------------------------------------------------------------


def test_reset_clears_the_new_records_and_forgets_search_ids(
    emulator_control: httpx.Client, token: str
) -> None:
    client = emulator_control
    search_id = search(client, token, {"query": BILLING_QUERY}).json()["searchId"]
    assert update_search(client, token, search_id, {"answered": True}).status_code == 200
    assert post_results(client, token, results_body()).status_code == 204
    set_faults(client, results_error_next=3)
    before = records(client)
    assert len(before["knowledge_searches"]) == 1
    assert len(before["knowledge_search_updates"]) == 1
    assert len(before["results"]) == 1

    assert client.post("/emulator/reset").status_code == 200

    after = records(client)
    assert after["knowledge_searches"] == []
    assert after["knowledge_search_updates"] == []
    assert after["results"] == []
    assert client.get("/emulator/faults").json()["results_error_next"] == 0
    # Search ids are forgotten, tokens are kept.
    assert_genesys_error(
        update_search(client, token, search_id, {"answered": True}), 404, "not.found"
    )
    assert post_results(client, token, results_body()).status_code == 204
