"""Integration tests of the emulator's Agent Copilot side: the suggestion topics, the scripted
insights a replay sends on them, the Copilot faults, the suggestion engagement endpoint and
the training-platform receiver.

One emulator (fast heartbeats, its own training secret) serves the module and is reset
before each test. Clients are real: httpx over loopback and the `websockets` sync client
(the helpers of `test_emulator_notifications`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from emulator.config import DEFAULT_CALLBACK_SECRET, ConfigError, EmulatorConfig
from emulator.knowledge import load_articles
from emulator.notifications import SUGGESTION_KINDS, suggestion_topic, transcription_topic
from emulator.scripts import (
    ASSISTANT_ID,
    MALFORMED_KINDS,
    Call,
    KnowledgeArticleInsight,
    KnowledgeSearchInsight,
    Script,
    load_scripts,
    malformed_frame,
)
from emulator.server import EmulatorServer
from tests.integration.test_emulator_notifications import (
    Api,
    Socket,
    make_config,
    new_token,
    parse_iso,
    wait_until,
)

TRAINING_SECRET = "whsec_" + base64.b64encode(b"copilot-training-test-secret").decode()
SCRIPTS = load_scripts()
BILLING = SCRIPTS["billing-dispute"]
#: Fast enough that a whole call plays in well under a second.
SPEED = 150

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TYPE_FIELDS = {
    "knowledge.search": "knowledgeSearch",
    "knowledge.article": "knowledgeArticle",
    "response": "cannedResponse",
    "script": "script",
    "intent": "conversationIntents",
    "thirdpartyaction": "thirdPartySuggestion",
}
COMMON_FIELDS = {
    "eventTime",
    "conversationId",
    "suggestionId",
    "state",
    "triggerType",
    "engagementType",
    "context",
}
CONTEXT_FIELDS = {
    "queueId",
    "mediaType",
    "userId",
    "assistantId",
    "utteranceId",
    "language",
    "participantType",
}
KNOWLEDGE_ARTICLE_FIELDS = {
    "title",
    "uri",
    "snippets",
    "metadata",
    "documentId",
    "versionId",
    "variationIds",
    "knowledgeAnswer",
}
KNOWLEDGE_SEARCH_FIELDS = {*KNOWLEDGE_ARTICLE_FIELDS, "confidence", "searchId"}


# --- helpers ---------------------------------------------------------------------------------


def all_topics(conversation_id: str) -> list[str]:
    return [transcription_topic(conversation_id)] + [
        suggestion_topic(conversation_id, kind) for kind in SUGGESTION_KINDS
    ]


def decode(frame: str | bytes) -> dict[str, Any] | None:
    """The JSON object of a text frame (None for binary frames and invalid JSON)."""
    if isinstance(frame, bytes):
        return None
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def kind_of(message: dict[str, Any]) -> str | None:
    """The suggestion kind of a message's topic (None for other topics)."""
    topic: str = message.get("topicName", "")
    _, found, kind = topic.partition(".suggestions.")
    return kind if found else None


def drain(sock: Socket, quiet_s: float = 0.5) -> list[str | bytes]:
    """Every non-heartbeat frame until none came for `quiet_s`."""
    frames: list[str | bytes] = []
    while True:
        try:
            frames += sock.frames_until(lambda _: True, timeout=quiet_s)
        except TimeoutError:
            return frames


def sign(
    body: str,
    webhook_id: str,
    *,
    secret: str = TRAINING_SECRET,
    at: datetime | None = None,
) -> dict[str, str]:
    when = at or datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, body),
        "content-type": "application/json",
    }


def transcription_utterance_ids(
    script: Script, messages: list[dict[str, Any]]
) -> tuple[list[str], list[int]]:
    """Per script utterance: the `utteranceId` of its transcription and its final's position."""
    ids: dict[str, str] = {}
    positions: dict[str, int] = {}
    for position, message in enumerate(messages):
        if not message.get("topicName", "").endswith(".transcription"):
            continue
        for transcript in message["eventBody"]["transcripts"]:
            if transcript["isFinal"]:
                text = transcript["alternatives"][0]["transcript"]
                ids[text] = transcript["utteranceId"]
                positions[text] = position
    return (
        [ids[u.text] for u in script.utterances],
        [positions[u.text] for u in script.utterances],
    )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(make_config(training_secret=TRAINING_SECRET))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(emulator: EmulatorServer) -> Iterator[Api]:
    emulator.state.reset()
    with httpx.Client(base_url=emulator.url, timeout=10.0) as http:
        yield Api(http, new_token(http))
    emulator.state.reset()


@pytest.fixture
def sockets() -> Iterator[list[Socket]]:
    opened: list[Socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def listen(api: Api, sockets: list[Socket]) -> Callable[..., Socket]:
    """A new channel subscribed to `topics`, with a socket open on it."""

    def _listen(*topics: str) -> Socket:
        channel = api.create_channel()
        if topics:
            api.subscribe(channel["id"], *topics)
        sock = Socket(channel["connectUri"])
        sockets.append(sock)
        return sock

    return _listen


def play(api: Api, script: str, **body: Any) -> dict[str, Any]:
    """Start a replay (own conversation id unless given) and wait until it has ended.

    Tests subscribe before starting, so the replay need not wait for a subscriber.
    """
    body.setdefault("subscribe_timeout_s", 0)
    started = api.start_conversation(
        script=script, conversation_id=body.pop("conversation_id", str(uuid.uuid4())), **body
    )
    wait_until(lambda: api.conversation(started["conversation_id"])["done"], timeout=15)
    finished = api.conversation(started["conversation_id"])
    assert finished["state"] == "ended"
    return finished


# --- topics ----------------------------------------------------------------------------------


def test_suggestion_topics_are_permitted_and_other_names_rejected(api: Api) -> None:
    cid = api.create_channel()["id"]
    conversation = "0b5e7d3c-1111-4a2b-9c3d-4e5f6a7b8c9d"
    good = [suggestion_topic(conversation, kind) for kind in SUGGESTION_KINDS]
    bad = [
        f"v2.conversations.{conversation}.suggestions.bogus",
        f"v2.conversations.{conversation}.suggestions",  # the unverified legacy topic
        f"v2.conversations.{conversation}.suggestions.knowledge.response",  # a blog typo
        f"v2.conversations.{conversation}.agentchecklist",
    ]

    response = api.subscriptions("PUT", cid, [*good, *bad])

    assert response.status_code == 200
    states = {e["id"]: e["state"] for e in response.json()["entities"]}
    assert states == {
        **dict.fromkeys(good, "Permitted"),
        **dict.fromkeys(bad, "Rejected"),
    }
    assert [e["id"] for e in api.subscriptions("GET", cid).json()["entities"]] == good
    assert api.records()["subscription_calls"][0]["rejected"] == bad
    assert set(TYPE_FIELDS) == set(SUGGESTION_KINDS)


# --- scripted insights -----------------------------------------------------------------------


def test_bundled_scripts_have_realistic_insights_of_every_kind() -> None:
    articles = {(a.knowledge_source_id, a.id): a for a in load_articles()}
    kinds: set[str] = set()
    for script in SCRIPTS.values():
        assert 4 <= len(script.insights) <= 6, script.name
        for insight in script.insights:
            kinds.add(insight.kind)
            assert script.utterances[insight.after_utterance].speaker == "customer"
            if isinstance(insight, KnowledgeSearchInsight | KnowledgeArticleInsight):
                article = articles[(insight.knowledge_base_id, insight.document_id)]
                assert insight.title == article.title
                assert all(snippet in article.content for snippet in insight.snippets)
    assert kinds == set(SUGGESTION_KINDS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_replay_sends_its_insights_with_the_real_payload_shape(
    name: str, api: Api, listen: Callable[..., Socket]
) -> None:
    script = SCRIPTS[name]
    conversation_id = str(uuid.uuid4())
    sock = listen(*all_topics(conversation_id))
    before = datetime.now(UTC)

    progress = play(api, name, conversation_id=conversation_id, speed=SPEED)

    messages = [m for m in map(decode, drain(sock)) if m is not None]
    utterance_ids, final_positions = transcription_utterance_ids(script, messages)
    insights = [(i, m) for i, m in enumerate(messages) if kind_of(m) is not None]
    assert len(insights) == len(script.insights)
    assert (progress["insights_planned"], progress["insights_sent"]) == (len(script.insights),) * 2
    assert progress["insights_delivered"] == len(script.insights)
    assert progress["suggestion_topics"] == {
        kind: suggestion_topic(conversation_id, kind) for kind in SUGGESTION_KINDS
    }
    ordered = sorted(
        enumerate(script.insights),
        key=lambda p: (script.utterances[p[1].after_utterance].end_ms + p[1].delay_ms, p[0]),
    )
    suggestion_ids = set()
    for (position, message), (_, insight) in zip(insights, ordered, strict=True):
        kind = insight.kind
        assert message["topicName"] == suggestion_topic(conversation_id, kind)
        assert set(message) == {"topicName", "version", "eventBody", "metadata"}
        body = message["eventBody"]
        type_field = TYPE_FIELDS[kind]
        triggered_by_intent = kind != "knowledge.search"
        expected_fields = {*COMMON_FIELDS, type_field}
        if triggered_by_intent:
            expected_fields.add("activeIntent")
        assert set(body) == expected_fields
        # Exactly one type-specific field, the one of its topic.
        assert set(body) & set(TYPE_FIELDS.values()) == {type_field}
        assert ISO_MS.match(body["eventTime"])
        assert parse_iso(body["eventTime"]) >= before - timedelta(seconds=1)
        assert body["conversationId"] == conversation_id
        assert uuid.UUID(body["suggestionId"])
        suggestion_ids.add(body["suggestionId"])
        assert (body["state"], body["engagementType"]) == ("Suggested", "Unknown")
        assert body["triggerType"] == ("Intent" if triggered_by_intent else "Fallback")
        assert body["context"] == {
            "queueId": script.queue_id,
            "mediaType": "VOICE",
            "userId": script.agent.user_id,
            "assistantId": ASSISTANT_ID,
            "utteranceId": utterance_ids[insight.after_utterance],
            "language": "en-US",
            "participantType": "CUSTOMER",
        }
        # It follows the final transcription message of its utterance.
        assert position > final_positions[insight.after_utterance]
        if not isinstance(insight, KnowledgeSearchInsight):
            active = body["activeIntent"]
            assert active == {
                "intent": insight.intent.name,
                "intentId": active["intentId"],
                "confidence": insight.intent.confidence,
            }
            assert uuid.UUID(active["intentId"])
        content = body[type_field]
        if kind in ("knowledge.search", "knowledge.article"):
            assert isinstance(insight, KnowledgeSearchInsight | KnowledgeArticleInsight)
            fields = (
                KNOWLEDGE_SEARCH_FIELDS
                if kind == "knowledge.search"
                else (KNOWLEDGE_ARTICLE_FIELDS)
            )
            assert set(content) == fields
            assert (content["title"], content["documentId"]) == (
                insight.title,
                insight.document_id,
            )
            assert content["snippets"] == list(insight.snippets)
            answer = content["knowledgeAnswer"]
            assert set(answer) == {"answer", "startIndex", "endIndex"}
            assert (
                content["snippets"][0][answer["startIndex"] : answer["endIndex"]]
                == (answer["answer"])
            )
            article = next(
                a
                for a in load_articles()
                if (a.knowledge_source_id, a.id) == (insight.knowledge_base_id, insight.document_id)
            )
            assert content["variationIds"] == [article.variation_id()]
            assert content["uri"].endswith(f"/{insight.document_id}")
            if kind == "knowledge.search":
                assert 0 <= content["confidence"] <= 1
                # The searchId is a real one: the knowledge API accepts it.
                patched = api.http.patch(
                    f"/api/v2/knowledge/knowledgebases/{insight.knowledge_base_id}"
                    f"/documents/search/{content['searchId']}",
                    json={"answered": True},
                    headers=api.auth,
                )
                assert patched.status_code == 200, patched.text
        elif kind == "response":
            assert set(content) == {"responseId", "libraryId"}
        elif kind == "script":
            assert set(content) == {"scriptId", "pageId", "data"}
            assert isinstance(content["data"], dict)
        elif kind == "intent":
            ((intent_name, intent),) = content.items()
            assert intent_name == body["activeIntent"]["intent"]
            assert intent == {
                "intentName": intent_name,
                "intentId": body["activeIntent"]["intentId"],
                "confidence": body["activeIntent"]["confidence"],
            }
        else:
            assert set(content) == {"text"} and content["text"]
    assert len(suggestion_ids) == len(script.insights)


def test_insights_reach_only_the_subscribers_of_their_topic_with_new_ids_per_replay(
    api: Api, listen: Callable[..., Socket]
) -> None:
    conversation_id = str(uuid.uuid4())
    search_only = listen(
        transcription_topic(conversation_id), suggestion_topic(conversation_id, "knowledge.search")
    )
    intent_and_response = listen(
        suggestion_topic(conversation_id, "intent"), suggestion_topic(conversation_id, "response")
    )
    transcription_only = listen(transcription_topic(conversation_id))

    progress = play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)

    def kinds(sock: Socket) -> list[str | None]:
        return [kind_of(m) for m in map(decode, drain(sock)) if m is not None and kind_of(m)]

    assert kinds(search_only) == ["knowledge.search"]
    assert kinds(intent_and_response) == ["intent", "response"]
    assert kinds(transcription_only) == []
    assert progress["insights_sent"] == len(BILLING.insights) == 5
    assert progress["insights_delivered"] == 3

    # A second replay of the same script: new suggestion ids.
    first = listen(*all_topics("replay-a"))
    second = listen(*all_topics("replay-b"))
    play(api, "billing-dispute", conversation_id="replay-a", speed=SPEED)
    play(api, "billing-dispute", conversation_id="replay-b", speed=SPEED)

    def ids(sock: Socket) -> set[str]:
        return {
            m["eventBody"]["suggestionId"]
            for m in map(decode, drain(sock))
            if m is not None and kind_of(m)
        }

    ids_a, ids_b = ids(first), ids(second)
    assert len(ids_a) == len(ids_b) == 5
    assert not ids_a & ids_b


def test_resend_after_reconnect_includes_insights_of_subscribed_topics_only(
    api: Api, sockets: list[Socket]
) -> None:
    conversation_id = str(uuid.uuid4())
    everything = api.create_channel()
    api.subscribe(everything["id"], *all_topics(conversation_id))
    transcript_only = api.create_channel()
    api.subscribe(transcript_only["id"], transcription_topic(conversation_id))
    progress = play(
        api,
        "password-reset",
        conversation_id=conversation_id,
        speed=SPEED,
        resend_last_n_after_reconnect=500,
    )
    assert (progress["frames_delivered"], progress["insights_delivered"]) == (0, 0)

    sockets.append(sock := Socket(everything["connectUri"]))
    resent = [m for m in map(decode, drain(sock)) if m is not None]
    sockets.append(other := Socket(transcript_only["connectUri"]))
    resent_other = [m for m in map(decode, drain(other)) if m is not None]

    assert len([m for m in resent if kind_of(m)]) == progress["insights_sent"] == 5
    assert len(resent) == progress["messages_sent"] + progress["insights_sent"]
    assert len(resent_other) == progress["messages_sent"]
    assert not [m for m in resent_other if kind_of(m)]


# --- Copilot faults --------------------------------------------------------------------------


def test_fault_copilot_duplicate_next(api: Api, listen: Callable[..., Socket]) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(*all_topics(conversation_id)[1:])
    api.set_faults(copilot_duplicate_next=2)

    progress = play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)

    frames = [f for f in drain(sock) if isinstance(f, str)]
    ids = [json.loads(f)["eventBody"]["suggestionId"] for f in frames]
    assert len(frames) == len(BILLING.insights) + 2
    # The first two insights come twice: the same frame, so the same id and body.
    assert frames[0] == frames[1] and frames[2] == frames[3]
    assert ids[0] != ids[2]
    assert len(set(ids)) == len(BILLING.insights) == len(set(ids[4:])) + 2
    assert progress["copilot_duplicates"] == 2
    assert (progress["insights_sent"], progress["insights_delivered"]) == (5, 5)
    assert api.http.get("/emulator/faults").json()["copilot_duplicate_next"] == 0
    # Only that conversation: the next one has no duplicates.
    again = str(uuid.uuid4())
    sock_again = listen(*all_topics(again)[1:])
    play(api, "billing-dispute", conversation_id=again, speed=SPEED)
    assert len(drain(sock_again)) == len(BILLING.insights)


def test_fault_copilot_bad_insights_next(api: Api, listen: Callable[..., Socket]) -> None:
    conversation_id = str(uuid.uuid4())
    search_topic = suggestion_topic(conversation_id, "knowledge.search")
    searches = listen(search_topic)
    intents = listen(suggestion_topic(conversation_id, "intent"))
    api.set_faults(copilot_bad_insights_next=6)

    progress = play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)

    messages = [m for m in map(decode, drain(searches)) if m is not None]
    *bad, good = messages
    assert len(bad) == 6
    assert good["eventBody"]["knowledgeSearch"]["confidence"] == 0.82  # the scripted one
    topics = [m["topicName"] for m in bad]
    bogus = f"v2.conversations.{conversation_id}.suggestions.bogus"
    assert topics == [search_topic] * 4 + [bogus, search_topic]
    bodies = [m["eventBody"] for m in bad]
    assert bodies[0]["knowledgeSearch"]["confidence"] == 1.7
    assert bodies[1]["knowledgeSearch"]["confidence"] == -0.2
    assert "suggestionId" not in bodies[2] and "conversationId" in bodies[2]
    assert "conversationId" not in bodies[3] and "suggestionId" in bodies[3]
    assert bodies[5]["knowledgeSearch"]["confidence"] == 1.7  # the defects cycle
    # The bad events carry the utterance of the first insight; they go to search subscribers.
    assert bodies[0]["context"]["utteranceId"] == good["eventBody"]["context"]["utteranceId"]
    assert [kind_of(m) for m in map(decode, drain(intents)) if m is not None] == ["intent"]
    assert progress["copilot_bad_insights"] == 6
    assert progress["insights_sent"] == 5
    assert api.http.get("/emulator/faults").json()["copilot_bad_insights_next"] == 0


def test_fault_copilot_binary_next(api: Api, listen: Callable[..., Socket]) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(*all_topics(conversation_id)[1:])
    api.set_faults(copilot_binary_next=3)

    progress = play(api, "password-reset", conversation_id=conversation_id, speed=SPEED)

    frames = drain(sock)
    assert [isinstance(f, bytes) for f in frames] == [True] * 4 + [False] * 2
    garbage, raw, encoded, raw_again, *texts = frames
    assert isinstance(garbage, bytes)
    with pytest.raises(ValueError):
        json.loads(garbage)
    with pytest.raises((binascii.Error, ValueError)):
        json.loads(base64.b64decode(garbage, validate=True))
    assert isinstance(raw, bytes) and isinstance(encoded, bytes)
    assert isinstance(raw_again, bytes)
    decoded = [
        json.loads(raw.decode("utf-8")),
        json.loads(base64.b64decode(encoded, validate=True).decode("utf-8")),
        json.loads(raw_again.decode("utf-8")),
        *(json.loads(t) for t in texts),
    ]
    script = SCRIPTS["password-reset"]
    assert [kind_of(m) for m in decoded] == [
        "knowledge.search",
        "intent",
        "thirdpartyaction",
        "script",
        "knowledge.article",
    ]
    assert [i.kind for i in script.insights] == [kind_of(m) for m in decoded]
    for message in decoded:
        assert set(message) == {"topicName", "version", "eventBody", "metadata"}
        assert message["eventBody"]["conversationId"] == conversation_id
        assert message["eventBody"]["state"] == "Suggested"
    assert progress["copilot_binary_insights"] == 3
    assert (progress["insights_sent"], progress["insights_delivered"]) == (5, 5)


def test_copilot_faults_are_strict(api: Api) -> None:
    for faults in (
        {"copilot_duplicate_next": -1},
        {"copilot_bad_insights_next": "2"},
        {"copilot_binary_next": 1.5},
        {"copilot_duplicates_next": 1},
        {"training_down": 1},
        {"training_error_next": True},
    ):
        response = api.http.post("/emulator/faults", json=faults)
        assert response.status_code == 400, faults
    current = api.http.get("/emulator/faults").json()
    assert (current["copilot_duplicate_next"], current["training_down"]) == (0, False)


# --- engagement ------------------------------------------------------------------------------


def engagement_path(conversation_id: str, suggestion_id: str) -> str:
    return f"/api/v2/conversations/{conversation_id}/suggestions/{suggestion_id}/engagement"


def test_engagement_changes_the_state_and_sends_a_follow_up_event(
    api: Api, listen: Callable[..., Socket]
) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(*all_topics(conversation_id)[1:])
    play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)
    sent = {kind_of(m): m for m in map(decode, drain(sock)) if m is not None}
    article = sent["knowledge.article"]["eventBody"]
    search = sent["knowledge.search"]["eventBody"]

    cases = [
        (article, {"engagementType": "Copied"}, "Accepted"),
        (article, {"engagementType": "Feedback", "feedback": {"rating": "Positive"}}, "Rated"),
        (search, {"engagementType": "Dismissed", "feedback": None, "extra": 1}, "Dismissed"),
        (search, {"engagementType": "Opened"}, "Accepted"),
    ]
    for original, body, state in cases:
        response = api.http.post(
            engagement_path(conversation_id, original["suggestionId"]),
            json=body,
            headers=api.auth,
        )
        assert response.status_code == 200, response.text
        expected = {k: v for k, v in body.items() if k in ("engagementType", "feedback") and v}
        assert response.json() == expected
        assert response.headers["ININ-Correlation-Id"]

        (followup,) = [m for m in map(decode, drain(sock, 0.3)) if m is not None]
        kind = "knowledge.article" if original is article else "knowledge.search"
        assert followup["topicName"] == suggestion_topic(conversation_id, kind)
        event = followup["eventBody"]
        assert event["suggestionId"] == original["suggestionId"]
        assert (event["state"], event["engagementType"]) == (state, body["engagementType"])
        if state == "Rated":
            assert event["feedback"] == {"rating": "Positive"}
        else:
            assert "feedback" not in event
        # Everything else is the suggestion as it was sent.
        unchanged = set(original) - {"eventTime", "state", "engagementType"}
        assert {k: event[k] for k in unchanged} == {k: original[k] for k in unchanged}
        assert parse_iso(event["eventTime"]) >= parse_iso(original["eventTime"])

    records = api.http.get("/emulator/records").json()["engagements"]
    assert [(r["suggestion_id"], r["status_code"]) for r in records] == [
        (article["suggestionId"], 200),
        (article["suggestionId"], 200),
        (search["suggestionId"], 200),
        (search["suggestionId"], 200),
    ]
    assert records[1] == {
        "conversation_id": conversation_id,
        "suggestion_id": article["suggestionId"],
        "status_code": 200,
        "body": {"engagementType": "Feedback", "feedback": {"rating": "Positive"}},
    }


def test_engagement_errors_and_rest_faults(api: Api, listen: Callable[..., Socket]) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(suggestion_topic(conversation_id, "intent"))
    play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)
    ((intent),) = [m for m in map(decode, drain(sock)) if m is not None]
    suggestion_id = intent["eventBody"]["suggestionId"]
    path = engagement_path(conversation_id, suggestion_id)
    ok = {"engagementType": "Dismissed"}

    def post(target: str, body: Any = ok, headers: dict[str, str] | None = None) -> httpx.Response:
        return api.http.post(target, json=body, headers=api.auth if headers is None else headers)

    # 404: an id never sent, or sent in another conversation.
    for target in (
        engagement_path(conversation_id, str(uuid.uuid4())),
        engagement_path("another-conversation", suggestion_id),
    ):
        missing = post(target)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not.found"
        assert missing.json()["contextId"] == missing.headers["ININ-Correlation-Id"]

    # 400: the message names the field.
    for body, field in (
        ({}, "engagementType"),
        ({"engagementType": "Liked"}, "engagementType"),
        ({"engagementType": "Feedback"}, "feedback"),
        ({"engagementType": "Feedback", "feedback": {"rating": "Meh"}}, "feedback.rating"),
        ({"engagementType": "Copied", "feedback": {}}, "feedback.rating"),
        ([ok], "body"),
    ):
        bad = post(path, body)
        assert bad.status_code == 400, body
        assert bad.json()["code"] == "bad.request"
        assert field in bad.json()["message"], (body, bad.json()["message"])
    text = api.http.post(path, content="engagementType=Copied", headers=api.auth)
    assert text.status_code == 400

    # 401 without a valid token.
    for headers in ({}, {"Authorization": "Bearer not-issued-here"}):
        denied = post(path, headers=headers)
        assert denied.status_code == 401
        assert denied.json()["code"] == "bad.credentials"

    # The REST faults of the async query endpoint.
    api.set_faults(rate_limit_next=1, server_error_next=1, retry_after_s=4)
    limited, unavailable, fine = post(path), post(path), post(path)
    assert (limited.status_code, unavailable.status_code, fine.status_code) == (429, 503, 200)
    assert limited.headers["Retry-After"] == "4"
    assert limited.json()["code"] == "too.many.requests"
    assert unavailable.json()["code"] == "service.unavailable"

    records = api.http.get("/emulator/records").json()["engagements"]
    assert [r["status_code"] for r in records] == [404, 404, *[400] * 7, 401, 401, 429, 503, 200]
    assert records[0]["conversation_id"] == conversation_id
    assert records[1]["conversation_id"] == "another-conversation"
    assert records[8]["body"] == "engagementType=Copied"
    # No follow-up event for any call but the 200.
    followups = [m for m in map(decode, drain(sock, 0.3)) if m is not None]
    assert [m["eventBody"]["state"] for m in followups] == ["Dismissed"]


# --- training-platform receiver ----------------------------------------------------------------


def test_training_receiver_verifies_signatures_and_flags_duplicates(api: Api) -> None:
    payload = {"insight_id": "i-1", "conversation_id": "c-1", "label": "helpful"}
    body = json.dumps(payload)

    def post(text: str, headers: dict[str, str]) -> httpx.Response:
        return api.http.post("/training/insights", content=text, headers=headers)

    first = post(body, sign(body, "msg_1"))
    again = post(body, sign(body, "msg_1"))  # a redelivery: fresh timestamp and signature
    other = post(body, sign(body, "msg_2"))
    wrong_secret = post(body, sign(body, "msg_3", secret=DEFAULT_CALLBACK_SECRET))
    tampered = post(body.replace("helpful", "harmful"), sign(body, "msg_4"))
    stale = post(body, sign(body, "msg_5", at=datetime.now(UTC) - timedelta(minutes=10)))
    unsigned = post(body, {"content-type": "application/json", "webhook-id": "msg_6"})
    garbled = post(body, {**sign(body, "msg_7"), "webhook-signature": "v1,%%%"})
    not_json = post("label=helpful", sign("label=helpful", "msg_8"))

    assert (first.status_code, again.status_code, other.status_code) == (204, 204, 204)
    assert first.content == b""
    for rejected in (wrong_secret, tampered, stale, unsigned, garbled):
        assert rejected.status_code == 401, rejected.text
    assert not_json.status_code == 400
    records = api.http.get("/emulator/records").json()["training"]
    assert [(r["webhook_id"], r["status_code"], r["duplicate"]) for r in records] == [
        ("msg_1", 204, False),
        ("msg_1", 204, True),
        ("msg_2", 204, False),
        ("msg_3", 401, False),
        ("msg_4", 401, False),
        ("msg_5", 401, False),
        ("msg_6", 401, False),
        ("msg_7", 401, False),
        ("msg_8", 400, False),
    ]
    assert records[0]["body"] == payload
    assert records[8]["body"] is None


def test_training_receiver_faults(api: Api) -> None:
    body = json.dumps({"insight_id": "i-9"})

    def post(webhook_id: str) -> int:
        response = api.http.post("/training/insights", content=body, headers=sign(body, webhook_id))
        return response.status_code

    api.set_faults(training_error_next=2)
    assert [post("msg_a"), post("msg_a"), post("msg_a")] == [503, 503, 204]
    assert api.http.get("/emulator/faults").json()["training_error_next"] == 0

    api.set_faults(training_down=True, training_error_next=1)
    assert [post("msg_b"), post("msg_a")] == [503, 503]
    # Still down: a bad signature gets a 503 too, and the counter is not consumed.
    unsigned = api.http.post("/training/insights", content=body)
    assert unsigned.status_code == 503
    assert api.http.get("/emulator/faults").json()["training_error_next"] == 1
    api.set_faults(training_down=False)
    assert [post("msg_b"), post("msg_b")] == [503, 204]

    records = api.http.get("/emulator/records").json()["training"]
    assert [(r["webhook_id"], r["status_code"], r["duplicate"]) for r in records] == [
        ("msg_a", 503, False),
        ("msg_a", 503, False),
        ("msg_a", 204, False),
        ("msg_b", 503, False),
        ("msg_a", 503, True),
        (None, 503, False),
        ("msg_b", 503, False),
        ("msg_b", 204, False),
    ]


def test_reset_clears_engagements_training_suggestions_and_copilot_faults(
    api: Api, listen: Callable[..., Socket]
) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(suggestion_topic(conversation_id, "response"))
    play(api, "billing-dispute", conversation_id=conversation_id, speed=SPEED)
    ((response_event),) = [m for m in map(decode, drain(sock)) if m is not None]
    path = engagement_path(conversation_id, response_event["eventBody"]["suggestionId"])
    assert api.http.post(path, json={"engagementType": "Copied"}, headers=api.auth).is_success
    body = json.dumps({"insight_id": "i-1"})
    headers = sign(body, "msg_reset")
    assert api.http.post("/training/insights", content=body, headers=headers).status_code == 204
    api.set_faults(copilot_binary_next=2, training_down=True)
    before = api.http.get("/emulator/records").json()
    assert (len(before["engagements"]), len(before["training"])) == (1, 1)

    assert api.http.post("/emulator/reset").status_code == 200

    after = api.http.get("/emulator/records").json()
    assert (after["engagements"], after["training"]) == ([], [])
    faults = api.http.get("/emulator/faults").json()
    assert (faults["copilot_binary_next"], faults["training_down"]) == (0, False)
    # The conversation and its suggestions are forgotten; the webhook-id too.
    assert (
        api.http.post(path, json={"engagementType": "Copied"}, headers=api.auth).status_code == 404
    )
    headers = sign(body, "msg_reset")
    assert api.http.post("/training/insights", content=body, headers=headers).status_code == 204
    assert api.http.get("/emulator/records").json()["training"][0]["duplicate"] is False


# --- scripts and configuration (no I/O) ------------------------------------------------------


def test_insights_are_validated_by_the_script_model() -> None:
    raw = BILLING.model_dump(mode="json")
    search = next(i for i in raw["insights"] if i["kind"] == "knowledge.search")
    problems = [
        ({**search, "after_utterance": len(BILLING.utterances)}, "after_utterance"),
        ({**search, "kind": "knowledge.bogus"}, "kind"),
        ({**search, "answer": "not in the snippet"}, "answer"),
        ({**search, "confidence": 1.2}, "confidence"),
        ({**search, "intent": {"name": "X", "confidence": 0.5}}, "intent"),
        ({"after_utterance": 1, "kind": "intent"}, "intent"),
        (
            {"after_utterance": 1, "kind": "response", "intent": {"name": "X", "confidence": 1}},
            "response_id",
        ),
        ({**search, "delay_ms": -1}, "delay_ms"),
    ]
    for insight, where in problems:
        with pytest.raises(ValidationError, match=where):
            Script.model_validate({**raw, "insights": [insight]})
    assert Script.model_validate(raw) == BILLING
    without_delay = {k: v for k, v in search.items() if k != "delay_ms"}
    parsed = Script.model_validate({**raw, "insights": [without_delay]})
    assert parsed.insights[0].delay_ms == 300


def test_config_training_secret_from_env() -> None:
    assert EmulatorConfig().training_secret == DEFAULT_CALLBACK_SECRET
    assert EmulatorConfig.from_env({}).training_secret == DEFAULT_CALLBACK_SECRET
    config = EmulatorConfig.from_env({"EMULATOR_TRAINING_SECRET": TRAINING_SECRET})
    assert config.training_secret == TRAINING_SECRET
    assert config.callback_secret == DEFAULT_CALLBACK_SECRET
    with pytest.raises(ConfigError, match="EMULATOR_TRAINING_SECRET"):
        EmulatorConfig.from_env({"EMULATOR_TRAINING_SECRET": "whsec_"})


def test_engagement_follow_up_reaches_subscribers_before_the_answer(
    api: Api, listen: Callable[..., Socket]
) -> None:
    conversation_id = str(uuid.uuid4())
    sock = listen(suggestion_topic(conversation_id, "script"))
    play(api, "cancellation", conversation_id=conversation_id, speed=SPEED)
    ((event),) = [m for m in map(decode, drain(sock)) if m is not None]
    path = engagement_path(conversation_id, event["eventBody"]["suggestionId"])

    answered = api.http.post(path, json={"engagementType": "Opened"}, headers=api.auth)
    received_at = time.monotonic()
    followup = sock.next_event(timeout=1.0)

    assert answered.status_code == 200
    assert time.monotonic() - received_at < 0.5  # already sent when the 200 came
    assert followup["eventBody"]["state"] == "Accepted"
    assert followup["eventBody"]["suggestionId"] == event["eventBody"]["suggestionId"]


def test_the_malformed_binary_frame_is_not_a_decodable_envelope() -> None:
    # Binary frames may carry an envelope (UTF-8 or base64), so the malformed one must not.
    call = Call.new(BILLING, "c-binary", BILLING.queue_id)
    frame = malformed_frame(MALFORMED_KINDS.index("binary"), call, 1_700_000_000_000)

    assert isinstance(frame, bytes)
    with pytest.raises(UnicodeDecodeError):
        frame.decode("utf-8")
    with pytest.raises(binascii.Error):
        base64.b64decode(frame, validate=True)
    assert b'"conversationId":"c-binary"' in frame
