"""Every Redis key the server uses, in one place, under one prefix (default `assist:v1`).

RQ keeps its own `rq:*` keys; everything of ours goes through `Keys`. Ids that come from
outside (conversation ids, suggestion ids) are used as they are: Redis keys are binary safe,
and the API validates their length and characters before they get here.
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- suggestion requests -------------------------------------------------------------
    def request(self, request_id: str) -> str:
        """JSON of a `SuggestionRequest`."""
        return self._key("request", request_id)

    def request_prefix(self) -> str:
        """What `request(id)` puts before the id (for the callback script, which finds the id
        in Redis)."""
        return self.request("")

    def request_records(self, request_id: str) -> str:
        """JSON list of the record events a request's ranking committed, kept until they are
        written (audit line, analytics), so a retried job writes what a dead one did not."""
        return self._key("request", request_id, "records")

    def provider_request(self, provider_request_id: str) -> str:
        """Provider request id -> our request id."""
        return self._key("provider-request", provider_request_id)

    def idempotency(self, scope: str, key_digest: str) -> str:
        """Idempotency-Key record: body fingerprint and the request id it created."""
        return self._key("idempotency", scope, key_digest)

    # --- callbacks -----------------------------------------------------------------------
    def callback_message(self, webhook_id_digest: str) -> str:
        """A `webhook-id` already processed (Standard Webhooks dedup)."""
        return self._key("callback", "message", webhook_id_digest)

    def callback_final(self, provider_request_id: str) -> str:
        """Set once the final callback of a provider request has been queued for ranking."""
        return self._key("callback", "final", provider_request_id)

    def callback_records(self) -> str:
        """List (outbox): the `callback_received` records the acknowledgement script staged,
        oldest first, until the worker writes them (audit line + analytics record)."""
        return self._key("callback", "records")

    def callback_records_claim(self) -> str:
        """How many records at the head of the outbox a writer is writing (set while it does,
        so a writer that dies mid-batch leaves its successor the count to write at most once)."""
        return self._key("callback", "records-claim")

    def callback_records_flag(self) -> str:
        """Set while a job to write the outbox is pending, so callbacks do not each enqueue one."""
        return self._key("callback", "records-scheduled")

    def callback_records_lock(self) -> str:
        return self._key("callback", "records-lock")

    # --- conversations -------------------------------------------------------------------
    def conversation_suggestions(self, conversation_id: str) -> str:
        """Hash: suggestion id -> JSON of the latest `RankedSuggestion`."""
        return self._key("conversation", conversation_id, "suggestions")

    def conversation_shown(self, conversation_id: str) -> str:
        """Hash: suggestion id -> score at which it was last shown."""
        return self._key("conversation", conversation_id, "shown")

    def conversation_transcript(self, conversation_id: str) -> str:
        """List of the conversation's recent final utterances (the live transcript window)."""
        return self._key("conversation", conversation_id, "transcript")

    def conversation_feed(self, conversation_id: str) -> str:
        """Stream of delivered suggestion events (the desk's live feed)."""
        return self._key("conversation", conversation_id, "feed")

    # --- feedback ------------------------------------------------------------------------
    def feedback_stats(self, suggestion_id: str) -> str:
        """Hash: shown / accepted counts per suggestion, plus one counter per action."""
        return self._key("feedback", "stats", suggestion_id)

    def feedback_mark(self, conversation_id: str, suggestion_id: str, what: str) -> str:
        """Set once per conversation so replayed feedback does not count twice."""
        return self._key("feedback", "mark", conversation_id, suggestion_id, what)

    # --- rate limits ---------------------------------------------------------------------
    def rate_limits(self) -> str:
        """Prefix of the `limits` library's moving-window lists, which it names
        `<this>:<endpoint>/<agent|ip>/<identity...>/<amount>/<multiples>/<granularity>`."""
        return self._key("rate-limit")

    def rate_limited_counters(self) -> str:
        """Hash: `<endpoint>.<agent|ip>` -> requests refused with 429 (for /metrics)."""
        return self._key("rate-limited")

    # --- Genesys -------------------------------------------------------------------------
    def genesys_token(self, client_digest: str) -> str:
        return self._key("genesys", "token", client_digest)

    def genesys_token_lock(self, client_digest: str) -> str:
        return self._key("genesys", "token-lock", client_digest)

    def genesys_circuit(self, circuit: str) -> str:
        """Hash: one provider's circuit breaker (failures, open_until, opened_at, opens)."""
        return self._key("genesys", "circuit", circuit)

    def genesys_circuit_probe(self, circuit: str) -> str:
        """Set (with a TTL) while one process sends the half-open circuit's probe call."""
        return self._key("genesys", "circuit-probe", circuit)

    # --- analytics -----------------------------------------------------------------------
    def analytics_events(self) -> str:
        return self._key("analytics", "events")

    def analytics_counters(self) -> str:
        return self._key("analytics", "counters")

    def analytics_cursor(self) -> str:
        """Stream id of the last record delivered to the analytics endpoint."""
        return self._key("analytics", "delivered-cursor")

    def analytics_delivery_flag(self) -> str:
        """Set while a delivery job is pending, so events do not each enqueue one."""
        return self._key("analytics", "delivery-scheduled")

    def analytics_delivery_lock(self) -> str:
        return self._key("analytics", "delivery-lock")

    # --- auto-trigger and utterance sync -------------------------------------------------
    def autotrigger_debounce(self, conversation_id: str) -> str:
        """Set for ASSIST_AUTOTRIGGER_DEBOUNCE_S after a conversation's auto-triggered query."""
        return self._key("autotrigger", conversation_id)

    def utterance_dead_letters(self) -> str:
        """List of utterance deliveries that failed every attempt (newest first, capped)."""
        return self._key("utterance-sync", "dead-letters")

    # --- live transcript stream (C2) -----------------------------------------------------
    def conversation_partials(self, conversation_id: str) -> str:
        """Hash: speaker -> JSON of the live partial utterance (never part of the window)."""
        return self._key("conversation", conversation_id, "partials")

    def conversation_utterances(self, conversation_id: str) -> str:
        """Hash: utterance id -> gate decision of its final (re-sent finals are ignored)."""
        return self._key("conversation", conversation_id, "utterances")

    def conversation_stream(self, conversation_id: str) -> str:
        """Hash: the stream's state of a conversation (queue, open/closed, last span per side)."""
        return self._key("conversation", conversation_id, "stream")

    def stream_conversations(self) -> str:
        """Sorted set: conversations the stream follows, scored by last activity (epoch s)."""
        return self._key("stream", "conversations")

    def stream_counters(self) -> str:
        """Hash: stream counters (frames dropped by reason, events processed, reconnects)."""
        return self._key("stream", "counters")

    def stream_status(self) -> str:
        """Hash: the stream process's live status (channels, topics, last frame time)."""
        return self._key("stream", "status")

    # --- knowledge providers (C4) ---------------------------------------------------------
    def knowledge_searches(self, conversation_id: str) -> str:
        """Hash: document id -> the Genesys knowledge search that found it (for the PATCH)."""
        return self._key("conversation", conversation_id, "knowledge-searches")

    # --- Copilot insights (C5) ----------------------------------------------------------
    def copilot_seen(self, conversation_id: str) -> str:
        """Hash: Copilot suggestionId -> its last state (dedup, and which ids are Copilot's)."""
        return self._key("conversation", conversation_id, "copilot")

    def copilot_counters(self) -> str:
        """Hash: Copilot counters per insight type (processed, under 500 ms) and sync outcomes."""
        return self._key("copilot", "counters")

    # --- keywords and entities (C3) ------------------------------------------------------
    def keyword_buffer(self, conversation_id: str) -> str:
        """List of final customer fragments (JSON) waiting to be analysed together."""
        return self._key("conversation", conversation_id, "keyword-buffer")

    def keyword_scheduled(self, conversation_id: str) -> str:
        """Set while an analysis job is scheduled for the buffer (one job per buffer window)."""
        return self._key("conversation", conversation_id, "keyword-scheduled")

    def keyword_cards(self, conversation_id: str) -> str:
        """Set of keyword card ids delivered in the conversation (a card is never repeated)."""
        return self._key("conversation", conversation_id, "keyword-cards")

    def keyword_cooldown(self, conversation_id: str) -> str:
        """Set for ASSIST_KEYWORD_COOLDOWN_S after keyword cards were delivered."""
        return self._key("conversation", conversation_id, "keyword-cooldown")
