"""The emulator's HTTP routes (a Flask application factory).

Routes, by audience:

* our server's Genesys adapters: `POST /oauth/token` (the real Genesys client-credentials
  contract) and `POST /v1/knowledge/queries` (the invented async-query provider contract,
  answered with signed callbacks);
* our server's Genesys Cloud Knowledge adapter (the real KnowledgeApi contract, bearer
  token required): `POST /api/v2/knowledge/knowledgebases/<knowledgeBaseId>/documents/search`
  (`?expand=documentVariations`; the knowledge bases are the knowledge sources of
  `emulator/data/knowledge.json`) and `PATCH .../documents/search/<searchId>` (mark a
  search answered);
* our server's notification stream: the Notifications API REST side
  (`/api/v2/notifications/channels...`, bearer token required; the WebSocket itself is
  served by `emulator.sockets`). Permitted topics: queue conversations, transcription and
  the six Agent Copilot suggestion topics `v2.conversations.{id}.suggestions.<kind>`;
* our server's Agent Copilot adapter (the real SuggestionsApi contract, bearer token
  required, behind the same REST faults as the async query endpoint):
  `POST /api/v2/conversations/<conversationId>/suggestions/<suggestionId>/engagement` with a
  `SuggestionEngagement` body, answered 200 with the engagement echoed (404 `not.found` for
  a suggestion the emulator never sent in that conversation, 400 naming the bad field); the
  suggestion's follow-up event (state Accepted, Dismissed or Rated) is sent on its topic
  before the answer;
* our server's results webhook (a contract of our own, bearer token required):
  `POST /results/suggestions`, answered 204;
* our server's training-platform export (a contract of our own, no token): `POST
  /training/insights`, Standard Webhooks signed with `training_secret`, answered 204 (401 for
  a missing or bad signature, 503 under the `training_*` faults; every call is recorded with
  `duplicate` telling whether its `webhook-id` was already answered 204);
* our server's analytics sink: `POST /analytics/events`;
* process managers: `GET /healthz`;
* tests and demos: `/emulator/*`, to read what the emulator saw, inject faults and play
  scripted conversations (`/emulator/conversations`, `/emulator/scripts`).

Answers use the Genesys Cloud wire formats: REST errors have the
`{"message", "code", "status", "contextId", "details", "errors"}` shape and carry the
`inin-ratelimit-*` and `ININ-Correlation-Id` headers, OAuth errors use the OAuth shape.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.exceptions import HTTPException

from emulator.config import EmulatorConfig
from emulator.delivery import CallbackDispatcher
from emulator.knowledge import KnowledgeBase, load_articles
from emulator.notifications import ChannelNotFound, TooManyTopics, TopicResult
from emulator.notifications import iso as iso_from
from emulator.scripts import load_scripts
from emulator.sockets import (
    ConversationExists,
    ConversationStart,
    NotificationServer,
    UnknownScript,
)
from emulator.state import EmulatorState, RestFault

log = logging.getLogger("emulator.http")

FORM_MIMETYPE = "application/x-www-form-urlencoded"
KNOWLEDGE_SEARCH_PATH = "/api/v2/knowledge/knowledgebases/<knowledge_base_id>/documents/search"
#: Longest knowledge search query (after stripping) the emulator accepts.
MAX_SEARCH_QUERY_CHARS = 1000
#: Genesys Cloud fetches at most 30 documents per knowledge search (over all pages).
MAX_SEARCH_RESULTS = 30
DEFAULT_SEARCH_PAGE_SIZE = 10
#: `expand` values of a knowledge search the emulator knows.
SEARCH_EXPANDS = frozenset({"documentVariations"})


class KnowledgeQuery(BaseModel):
    """Body of `POST /v1/knowledge/queries`.

    Strict types so a client sending `"agentSkills": "billing"` hears about it. Unknown
    fields are ignored, as Genesys Cloud APIs do, so the contract can grow.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    conversationId: str = Field(min_length=1)
    transcript: str = ""
    agentSkills: list[str] = Field(default_factory=list)
    knowledgeSourceIds: list[str] = Field(min_length=1)
    callbackUrl: str
    async_: bool = Field(default=True, alias="async")

    @field_validator("knowledgeSourceIds")
    @classmethod
    def _no_blank_ids(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("knowledge source ids must not be blank")
        return value

    @field_validator("callbackUrl")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http or https URL")
        return value

    @field_validator("async_")
    @classmethod
    def _only_async(cls, value: bool) -> bool:
        if not value:
            raise ValueError("only asynchronous queries are supported; send true or omit it")
        return value


class KnowledgeConversationContext(BaseModel):
    """`conversationContext` of a knowledge search; extra fields are kept (and echoed)."""

    model_config = ConfigDict(strict=True, extra="allow")

    conversationId: str = Field(min_length=1)
    mediaType: str | None = None
    messageType: str | None = None
    queueId: str | None = None
    externalContactId: str | None = None


class KnowledgeDocumentSearchRequest(BaseModel):
    """Body of `POST .../knowledgebases/<id>/documents/search` (Genesys Cloud contract).

    Strict types, like `KnowledgeQuery`; `null` counts as absent (as Genesys Cloud's JSON
    binding does), and other fields of the real request (`filter`, `sortBy`, ...) are
    ignored.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    query: str
    pageSize: int | None = Field(default=None, ge=1, le=MAX_SEARCH_RESULTS)
    pageNumber: int | None = Field(default=None, ge=1)
    queryType: Literal["AutoSearch", "ManualSearch", "Suggestion"] | None = None
    conversationContext: KnowledgeConversationContext | None = None
    confidenceThreshold: float | None = Field(default=None, ge=0.0, le=1.0)
    includeDraftDocuments: bool | None = None
    preprocessQuery: bool | None = None

    @field_validator("query")
    @classmethod
    def _query_length(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("must not be blank")
        if len(stripped) > MAX_SEARCH_QUERY_CHARS:
            raise ValueError(f"must be at most {MAX_SEARCH_QUERY_CHARS} characters")
        return value


class DocumentReference(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    id: str = Field(min_length=1)


class SelectedAnswer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    document: DocumentReference


class SearchUpdateRequest(BaseModel):
    """Body of `PATCH .../documents/search/<searchId>` (Genesys Cloud contract)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    sessionId: str | None = None
    answered: bool
    selectedAnswer: SelectedAnswer | None = None


class EngagementFeedback(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    rating: Literal["Negative", "Positive"]


class SuggestionEngagement(BaseModel):
    """Body (and answer) of `POST .../suggestions/<suggestionId>/engagement` (Genesys Cloud).

    `feedback` is required when `engagementType` is Feedback and optional otherwise; `null`
    counts as absent and unknown fields are ignored, as for the other Genesys bodies.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    engagementType: Literal["Dismissed", "Copied", "Opened", "Feedback"]
    feedback: EngagementFeedback | None = None

    @model_validator(mode="after")
    def _feedback_when_rated(self) -> SuggestionEngagement:
        if self.engagementType == "Feedback" and self.feedback is None:
            raise ValueError("feedback: required when engagementType is Feedback")
        return self


class ResultsDelivery(BaseModel):
    """Body of `POST /results/suggestions` (our own contract): any object with these two."""

    model_config = ConfigDict(strict=True, extra="allow")

    request_id: str = Field(min_length=1)
    suggestions: list[Any]


def genesys_error(status: int, code: str, message: str, correlation_id: str) -> Response:
    """A Genesys Cloud style REST error (`contextId` is the request's correlation id)."""
    response = jsonify(
        {
            "message": message,
            "code": code,
            "status": status,
            "contextId": correlation_id,
            "details": [],
            "errors": [],
        }
    )
    response.status_code = status
    return response


def oauth_error(status: int, error: str, description: str) -> Response:
    # Genesys sends `description`; `error_description` is the RFC 6749 name, which generic
    # OAuth clients look for.
    response = jsonify(
        {"error": error, "description": description, "error_description": description}
    )
    response.status_code = status
    return response


def basic_credentials(header: str) -> tuple[str | None, str | None]:
    """(client id, secret) from an HTTP Basic `Authorization` header, or (None, None)."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None, None
    return client_id, secret


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _search_expands(values: list[str]) -> set[str] | str:
    """The `expand` query values (repeated or comma-separated), or what is wrong."""
    expands = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(expands - SEARCH_EXPANDS)
    if unknown:
        known = ", ".join(sorted(SEARCH_EXPANDS))
        return f"expand: unknown value(s) {', '.join(unknown)}; supported: {known}"
    return expands


def _request_body() -> Any:
    """The request body for the records: its JSON, or its text when it is not JSON."""
    body = request.get_json(silent=True)
    return body if body is not None else request.get_data(as_text=True)


def _conversation_of_call() -> str | None:
    """The conversation a REST call is about: its body's `conversationId` (async query), its
    `conversationContext.conversationId` (knowledge search), or its path's."""
    body = request.get_json(silent=True)
    if isinstance(body, dict):
        found = body.get("conversationId")
        context = body.get("conversationContext")
        if found is None and isinstance(context, dict):
            found = context.get("conversationId")
        if isinstance(found, str):
            return found
    found = (request.view_args or {}).get("conversation_id")
    return found if isinstance(found, str) else None


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_topics(body: Any) -> list[str] | str:
    """The topic ids of a subscriptions body (`[{"id": topic}, ...]`), or what is wrong."""
    if not isinstance(body, list):
        return 'The body must be a JSON array of {"id": "<topic>"} objects.'
    topics: list[str] = []
    for index, item in enumerate(body):
        topic = item.get("id") if isinstance(item, dict) else None
        if not isinstance(topic, str) or not topic.strip():
            return f'body[{index}]: expected an object with a non-empty string "id"'
        topics.append(topic)
    return topics


def control_error(status: int, error: str, description: str) -> Response:
    """An error of the `/emulator/*` control routes."""
    response = jsonify({"error": error, "description": description})
    response.status_code = status
    return response


def create_app(
    state: EmulatorState,
    config: EmulatorConfig,
    dispatcher: CallbackDispatcher,
    knowledge: KnowledgeBase | None = None,
    notifications: NotificationServer | None = None,
) -> Flask:
    """Build the emulator's Flask app around `state` (shared with the caller).

    The Notifications API routes exist only when `notifications` (the running WebSocket
    side, which owns the channel registry) is given.
    """
    app = Flask("emulator")
    kb = knowledge if knowledge is not None else KnowledgeBase(load_articles())

    def genesys_headers(response: Response, correlation_id: str) -> Response:
        limit = state.count_rest_call()
        response.headers["inin-ratelimit-count"] = str(limit.count)
        response.headers["inin-ratelimit-allowed"] = str(limit.allowed)
        response.headers["inin-ratelimit-reset"] = str(limit.reset_s)
        response.headers["ININ-Correlation-Id"] = correlation_id
        return response

    def rest_call(handler: Callable[[str], Response]) -> Response:
        """Run a token/query handler behind the injected faults and the Genesys headers;
        record the call (`rest_calls`) with its arrival time."""
        arrived = time.time()
        correlation_id = str(uuid.uuid4())
        decision = state.decide_rest_fault()
        if decision.slow_ms:
            time.sleep(decision.slow_ms / 1000)
        if decision.fault is RestFault.RATE_LIMITED:
            response = genesys_error(
                429,
                "too.many.requests",
                "Rate limit exceeded the maximum. Retry the request in "
                f"[{decision.retry_after_s}] seconds",
                correlation_id,
            )
            response.headers["Retry-After"] = str(decision.retry_after_s)
        elif decision.fault is RestFault.SERVER_ERROR:
            response = genesys_error(
                503, "service.unavailable", "The service is currently unavailable", correlation_id
            )
        else:
            response = handler(correlation_id)
        retry_after = response.headers.get("Retry-After")
        state.record_rest_call(
            {
                "route": request.endpoint or request.path,
                "at": arrived,
                "status_code": response.status_code,
                "fault": None if decision.fault is RestFault.NONE else decision.fault.value,
                "retry_after_s": int(retry_after) if retry_after is not None else None,
                "conversation_id": _conversation_of_call(),
            }
        )
        return genesys_headers(response, correlation_id)

    # --- Genesys Cloud OAuth --------------------------------------------------------------

    @app.post("/oauth/token")
    def oauth_token() -> Response:
        client_id, secret = basic_credentials(request.headers.get("Authorization", ""))

        def handle(_: str) -> Response:
            if request.mimetype != FORM_MIMETYPE:
                return oauth_error(400, "invalid_request", f"the body must be {FORM_MIMETYPE}")
            if (
                client_id is None
                or secret is None
                or not hmac.compare_digest(client_id.encode(), config.client_id.encode())
                or not hmac.compare_digest(secret.encode(), config.client_secret.encode())
            ):
                return oauth_error(
                    401, "invalid_client", "client authentication failed (HTTP Basic expected)"
                )
            grant_type = request.form.get("grant_type")
            if grant_type != "client_credentials":
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    f"grant_type must be client_credentials, got {grant_type!r}",
                )
            token = state.issue_token(config.token_ttl_s)
            return jsonify(
                {"access_token": token, "token_type": "bearer", "expires_in": config.token_ttl_s}
            )

        response = rest_call(handle)
        state.record_token_request(
            {
                "client_id": client_id,
                "ok": response.status_code == 200,
                "status": response.status_code,
            }
        )
        return response

    # --- the async-query knowledge provider -----------------------------------------------

    @app.post("/v1/knowledge/queries")
    def knowledge_query() -> Response:
        provider_id: str | None = None

        def handle(correlation_id: str) -> Response:
            nonlocal provider_id
            token = bearer_token(request.headers.get("Authorization", ""))
            if token is None or not state.token_is_valid(token):
                return genesys_error(
                    401, "bad.credentials", "Invalid login credentials.", correlation_id
                )
            if not request.is_json:
                return genesys_error(
                    400, "bad.request", "The body must be application/json.", correlation_id
                )
            try:
                query = KnowledgeQuery.model_validate(request.get_json(silent=True))
            except ValidationError as exc:
                return genesys_error(400, "bad.request", _validation_message(exc), correlation_id)
            provider_id = f"q_{uuid.uuid4().hex}"
            faults = state.faults
            if faults.drop_callbacks:
                log.info("query %s accepted; dropping its callbacks (fault)", provider_id)
            else:
                delay_ms = (
                    faults.callback_delay_ms
                    if faults.callback_delay_ms is not None
                    else config.callback_delay_ms
                )
                dispatcher.schedule(
                    provider_id,
                    query.callbackUrl,
                    kb.match(query.transcript, query.knowledgeSourceIds),
                    delay_s=delay_ms / 1000,
                    extra_copies=faults.duplicate_deliveries,
                )
            response = jsonify(
                {
                    "id": provider_id,
                    "status": "queued",
                    "callbackUrl": query.callbackUrl,
                    "createdTimestamp": _iso_now(),
                }
            )
            response.status_code = 202
            return response

        response = rest_call(handle)
        body = request.get_json(silent=True)
        state.record_query(
            {
                "id": provider_id,
                "status_code": response.status_code,
                "body": body if body is not None else request.get_data(as_text=True),
            }
        )
        return response

    # --- Genesys Cloud Knowledge search (KnowledgeApi) -------------------------------------

    def unauthorized(correlation_id: str) -> Response | None:
        """The 401 answer if the request has no valid bearer token, else None."""
        token = bearer_token(request.headers.get("Authorization", ""))
        if token is None or not state.token_is_valid(token):
            return genesys_error(
                401, "bad.credentials", "Invalid login credentials.", correlation_id
            )
        return None

    def knowledge_base_not_found(knowledge_base_id: str, correlation_id: str) -> Response:
        return genesys_error(
            404, "not.found", f"Knowledge base {knowledge_base_id} was not found", correlation_id
        )

    @app.post(KNOWLEDGE_SEARCH_PATH)
    def knowledge_search(knowledge_base_id: str) -> Response:
        search_id: str | None = None

        def handle(correlation_id: str) -> Response:
            nonlocal search_id
            denied = unauthorized(correlation_id)
            if denied is not None:
                return denied
            if knowledge_base_id not in kb.source_ids:
                return knowledge_base_not_found(knowledge_base_id, correlation_id)
            expands = _search_expands(request.args.getlist("expand"))
            if isinstance(expands, str):
                return genesys_error(400, "bad.request", expands, correlation_id)
            if not request.is_json:
                return genesys_error(
                    400, "bad.request", "The body must be application/json.", correlation_id
                )
            try:
                search = KnowledgeDocumentSearchRequest.model_validate(
                    request.get_json(silent=True)
                )
            except ValidationError as exc:
                return genesys_error(400, "bad.request", _validation_message(exc), correlation_id)
            page_size = search.pageSize or DEFAULT_SEARCH_PAGE_SIZE
            page_number = search.pageNumber or 1
            threshold = search.confidenceThreshold
            found = [
                (confidence, article)
                for confidence, article in kb.search(search.query, knowledge_base_id)
                if threshold is None or confidence >= threshold
            ][:MAX_SEARCH_RESULTS]
            start = (page_number - 1) * page_size
            with_variations = "documentVariations" in expands
            search_id = state.issue_search_id(knowledge_base_id)
            answer: dict[str, Any] = {
                "query": search.query,
                "pageSize": page_size,
                "pageNumber": page_number,
                "searchId": search_id,
                "total": len(found),
                "pageCount": math.ceil(len(found) / page_size),
                "queryType": search.queryType,
                "conversationContext": (
                    search.conversationContext.model_dump(exclude_none=True)
                    if search.conversationContext is not None
                    else None
                ),
                "confidenceThreshold": threshold,
                "results": [
                    {
                        "confidence": confidence,
                        "document": article.to_search_document(with_variations=with_variations),
                    }
                    for confidence, article in found[start : start + page_size]
                ],
            }
            # Genesys Cloud leaves unset fields out rather than sending null.
            return jsonify({key: value for key, value in answer.items() if value is not None})

        response = rest_call(handle)
        state.record_knowledge_search(
            {
                "knowledge_base_id": knowledge_base_id,
                "status_code": response.status_code,
                "search_id": search_id,
                "body": _request_body(),
            }
        )
        return response

    @app.patch(f"{KNOWLEDGE_SEARCH_PATH}/<search_id>")
    def knowledge_search_update(knowledge_base_id: str, search_id: str) -> Response:
        def handle(correlation_id: str) -> Response:
            denied = unauthorized(correlation_id)
            if denied is not None:
                return denied
            if knowledge_base_id not in kb.source_ids:
                return knowledge_base_not_found(knowledge_base_id, correlation_id)
            if not request.is_json:
                return genesys_error(
                    400, "bad.request", "The body must be application/json.", correlation_id
                )
            try:
                update = SearchUpdateRequest.model_validate(request.get_json(silent=True))
            except ValidationError as exc:
                return genesys_error(400, "bad.request", _validation_message(exc), correlation_id)
            if not state.search_was_issued(knowledge_base_id, search_id):
                return genesys_error(
                    404,
                    "not.found",
                    f"Search {search_id} was not found in knowledge base {knowledge_base_id}",
                    correlation_id,
                )
            return jsonify(
                {
                    "searchId": search_id,
                    "answered": update.answered,
                    "selectedAnswer": (
                        update.selectedAnswer.model_dump()
                        if update.selectedAnswer is not None
                        else None
                    ),
                }
            )

        response = rest_call(handle)
        state.record_knowledge_search_update(
            {
                "knowledge_base_id": knowledge_base_id,
                "search_id": search_id,
                "status_code": response.status_code,
                "body": _request_body(),
            }
        )
        return response

    # --- Genesys Cloud Notifications API (REST side) ----------------------------------------

    def notifications_call(handler: Callable[[str, str], Response]) -> Response:
        """Check the bearer token, then run `handler(correlation_id, token)`; Genesys headers."""
        correlation_id = str(uuid.uuid4())
        token = bearer_token(request.headers.get("Authorization", ""))
        if token is None or not state.token_is_valid(token):
            response = genesys_error(
                401, "bad.credentials", "Invalid login credentials.", correlation_id
            )
        else:
            response = handler(correlation_id, token)
        return genesys_headers(response, correlation_id)

    def channel_not_found(channel_id: str, correlation_id: str) -> Response:
        return genesys_error(
            404, "not.found", f"Channel {channel_id} was not found or has expired", correlation_id
        )

    if notifications is not None:
        registry = notifications.registry

        @app.post("/api/v2/notifications/channels")
        def create_channel() -> Response:
            def handle(_: str, token: str) -> Response:
                channel, evicted = registry.create(token=token, client_id=config.client_id)
                state.record_channel(
                    {"id": channel.id, "created": iso_from(channel.created), "evicted": evicted}
                )
                if evicted is not None:
                    log.info("channel %s created, evicting %s", channel.id, evicted)
                return jsonify(channel.as_json())

            return notifications_call(handle)

        @app.get("/api/v2/notifications/channels")
        def list_channels() -> Response:
            def handle(correlation_id: str, token: str) -> Response:
                include = request.args.get("includechannels", "token")
                if include not in ("token", "oauthclient"):
                    return genesys_error(
                        400,
                        "bad.request",
                        "includechannels must be token or oauthclient",
                        correlation_id,
                    )
                entities = registry.listing(
                    token=token,
                    client_id=config.client_id,
                    include="token" if include == "token" else "oauthclient",
                )
                return jsonify({"entities": entities})

            return notifications_call(handle)

        @app.route("/api/v2/notifications/channels/<channel_id>", methods=["HEAD"])
        def head_channel(channel_id: str) -> Response:
            def handle(_: str, __: str) -> Response:
                return Response(status=200 if registry.exists(channel_id) else 404)

            return notifications_call(handle)

        @app.route(
            "/api/v2/notifications/channels/<channel_id>/subscriptions",
            methods=["GET", "POST", "PUT", "DELETE"],
        )
        def subscriptions(channel_id: str) -> Response:
            topics: list[str] = []
            rejected: list[str] = []

            def handle(correlation_id: str, _: str) -> Response:
                nonlocal topics, rejected
                if state.take_fault("subscription_rate_limit_next"):
                    retry_after = state.faults.retry_after_s
                    response = genesys_error(
                        429,
                        "too.many.requests",
                        "Rate limit exceeded the maximum. Retry the request in "
                        f"[{retry_after}] seconds",
                        correlation_id,
                    )
                    response.headers["Retry-After"] = str(retry_after)
                    return response
                try:
                    if request.method == "GET":
                        current = registry.topics(channel_id)
                        entities = [TopicResult(t, True).as_json(channel_id) for t in current]
                        return jsonify({"entities": entities})
                    if request.method == "DELETE":
                        registry.unsubscribe_all(channel_id)
                        return Response(status=204)
                    parsed = _parse_topics(request.get_json(silent=True))
                    if isinstance(parsed, str):
                        return genesys_error(400, "bad.request", parsed, correlation_id)
                    topics = parsed
                    results, rejected = registry.subscribe(
                        channel_id, topics, "add" if request.method == "POST" else "replace"
                    )
                    return jsonify({"entities": [r.as_json(channel_id) for r in results]})
                except ChannelNotFound:
                    return channel_not_found(channel_id, correlation_id)
                except TooManyTopics as exc:
                    return genesys_error(400, "bad.request", str(exc), correlation_id)

            response = notifications_call(handle)
            state.record_subscription_call(
                {
                    "channel_id": channel_id,
                    "method": request.method,
                    "status": response.status_code,
                    "topics": topics,
                    "rejected": rejected,
                }
            )
            return response

        # --- scripted conversations (control) ---------------------------------------------

        @app.post("/emulator/conversations")
        def start_conversation() -> Response:
            body = request.get_json(force=True, silent=True)
            if not isinstance(body, dict):
                return control_error(400, "bad_request", "expected a JSON object")
            try:
                start = ConversationStart.model_validate(body)
                snapshot = notifications.start_conversation(start)
            except ValidationError as exc:
                return control_error(400, "invalid_conversation", _validation_message(exc))
            except UnknownScript as exc:
                return control_error(404, "unknown_script", str(exc))
            except ConversationExists as exc:
                return control_error(409, "conversation_exists", str(exc))
            response = jsonify(snapshot)
            response.status_code = 201
            return response

        @app.get("/emulator/conversations")
        def list_conversations() -> Response:
            return jsonify({"conversations": notifications.conversations()})

        @app.get("/emulator/scripts")
        def list_scripts() -> Response:
            return jsonify(
                {
                    "scripts": [
                        {
                            "name": script.name,
                            "title": script.title,
                            "queue_id": script.queue_id,
                            "queue_name": script.queue_name,
                            "language": script.language,
                            "utterances": len(script.utterances),
                            "insights": len(script.insights),
                        }
                        for script in load_scripts().values()
                    ]
                }
            )

        # --- Agent Copilot suggestion engagement (SuggestionsApi) ---------------------------

        @app.post("/api/v2/conversations/<conversation_id>/suggestions/<suggestion_id>/engagement")
        def suggestion_engagement(conversation_id: str, suggestion_id: str) -> Response:
            def handle(correlation_id: str) -> Response:
                denied = unauthorized(correlation_id)
                if denied is not None:
                    return denied
                if not request.is_json:
                    return genesys_error(
                        400, "bad.request", "The body must be application/json.", correlation_id
                    )
                try:
                    engagement = SuggestionEngagement.model_validate(request.get_json(silent=True))
                except ValidationError as exc:
                    return genesys_error(
                        400, "bad.request", _validation_message(exc), correlation_id
                    )
                rating = engagement.feedback.rating if engagement.feedback is not None else None
                if not notifications.engage(
                    conversation_id, suggestion_id, engagement.engagementType, rating
                ):
                    return genesys_error(
                        404,
                        "not.found",
                        f"Suggestion {suggestion_id} was not found in conversation "
                        f"{conversation_id}",
                        correlation_id,
                    )
                return jsonify(engagement.model_dump(exclude_none=True))

            response = rest_call(handle)
            state.record_engagement(
                {
                    "conversation_id": conversation_id,
                    "suggestion_id": suggestion_id,
                    "status_code": response.status_code,
                    "body": _request_body(),
                }
            )
            return response

    # --- results webhook (our own contract) ------------------------------------------------

    @app.post("/results/suggestions")
    def results_suggestions() -> Response:
        correlation_id = str(uuid.uuid4())

        def answer() -> Response:
            # Faults first, in this order (see the results_* fields of `Faults`).
            if state.take_fault("results_rate_limit_next"):
                retry_after = state.faults.retry_after_s
                response = genesys_error(
                    429,
                    "too.many.requests",
                    f"Rate limit exceeded the maximum. Retry the request in [{retry_after}] "
                    "seconds",
                    correlation_id,
                )
                response.headers["Retry-After"] = str(retry_after)
                return response
            if state.take_fault("results_error_next"):
                return genesys_error(
                    503,
                    "service.unavailable",
                    "The service is currently unavailable",
                    correlation_id,
                )
            denied = unauthorized(correlation_id)
            if denied is not None:
                return denied
            if state.take_fault("results_unauthorized_next"):
                return genesys_error(
                    401, "bad.credentials", "Invalid login credentials.", correlation_id
                )
            if state.take_fault("results_forbidden_next"):
                return genesys_error(
                    403,
                    "not.authorized",
                    "You are not authorized to perform the requested action.",
                    correlation_id,
                )
            if not request.is_json:
                return genesys_error(
                    400, "bad.request", "The body must be application/json.", correlation_id
                )
            try:
                ResultsDelivery.model_validate(request.get_json(silent=True))
            except ValidationError as exc:
                return genesys_error(400, "bad.request", _validation_message(exc), correlation_id)
            return Response(status=204)

        response = genesys_headers(answer(), correlation_id)
        state.record_results(
            {
                "status_code": response.status_code,
                "body": _request_body(),
                "idempotency_key": request.headers.get("Idempotency-Key"),
            }
        )
        return response

    # --- training-platform receiver (our own contract) --------------------------------------

    training_webhook = Webhook(config.training_secret)

    @app.post("/training/insights")
    def training_insights() -> Response:
        webhook_id = request.headers.get("webhook-id")
        duplicate = state.training_was_answered(webhook_id)
        data = request.get_data()
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = None

        def answer() -> Response:
            # Faults first, as a gateway in front of the platform would answer.
            if state.faults.training_down:
                return control_error(503, "unavailable", "the training platform is down (fault)")
            if state.take_fault("training_error_next"):
                return control_error(503, "unavailable", "injected fault")
            try:
                training_webhook.verify(data, dict(request.headers), json_parse=False)
            except WebhookVerificationError as exc:
                return control_error(401, "invalid_signature", str(exc))
            except (ValueError, binascii.Error) as exc:  # e.g. a signature that is not base64
                return control_error(401, "invalid_signature", f"malformed signature: {exc}")
            if body is None:
                return control_error(400, "bad_request", "the body must be JSON")
            return Response(status=204)

        response = answer()
        state.record_training(
            {
                "webhook_id": webhook_id,
                "status_code": response.status_code,
                "body": body,
                "duplicate": duplicate,
            }
        )
        return response

    # --- analytics sink -------------------------------------------------------------------

    @app.post("/analytics/events")
    def analytics_events() -> Response:
        if state.take_analytics_fault():
            response = jsonify({"error": "unavailable", "description": "injected fault"})
            response.status_code = 503
            return response
        data = request.get_json(force=True, silent=True)
        events: list[dict[str, Any]]
        if isinstance(data, dict):
            events = [data]
        elif isinstance(data, list) and all(isinstance(item, dict) for item in data):
            events = data
        else:
            response = jsonify(
                {"error": "bad_request", "description": "expected a JSON object or array of them"}
            )
            response.status_code = 400
            return response
        state.record_analytics_events(events)
        response = jsonify({"received": len(events)})
        response.status_code = 202
        return response

    # --- health ---------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    # --- test and fault control -----------------------------------------------------------

    @app.get("/emulator/records")
    def records() -> Response:
        return jsonify(state.records())

    @app.post("/emulator/reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"status": "reset"})

    @app.get("/emulator/faults")
    def get_faults() -> Response:
        return jsonify(state.faults.model_dump())

    @app.post("/emulator/faults")
    def set_faults() -> Response:
        changes = request.get_json(force=True, silent=True)
        if not isinstance(changes, dict):
            return control_error(400, "bad_request", "expected a JSON object")
        try:
            faults = state.update_faults(changes)
        except ValidationError as exc:
            return control_error(400, "invalid_faults", _validation_message(exc))
        log.info("faults now %s", faults.model_dump(exclude_defaults=True))
        return jsonify(faults.model_dump())

    @app.post("/emulator/revoke-tokens")
    def revoke_tokens() -> Response:
        return jsonify({"revoked": state.revoke_tokens()})

    # --- plumbing -------------------------------------------------------------------------

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # JSON rather than Werkzeug's HTML pages: every client of the emulator speaks JSON.
        status = exc.code or 500
        return genesys_error(
            status,
            (exc.name or "error").lower().replace(" ", "."),
            exc.description or "",
            str(uuid.uuid4()),
        )

    @app.after_request
    def log_request(response: Response) -> Response:
        log.info("%s %s -> %d", request.method, request.path, response.status_code)
        return response

    return app
