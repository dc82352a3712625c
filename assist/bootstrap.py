"""Composition root: build every client, store and adapter from `Settings`, once per process.

Entry points call `build_services(settings)`; the Flask factory keeps the result in
`app.extensions["assist"]` and RQ workers build theirs after start-up (never at import time).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from assist.adapters.analytics_sink import AnalyticsSink
from assist.adapters.genesys.auth import TokenProvider
from assist.adapters.genesys.circuit import CircuitBreaker
from assist.adapters.genesys.copilot import GenesysCopilot
from assist.adapters.genesys.http import ResilientHttp
from assist.adapters.genesys.knowledge import GenesysKnowledge
from assist.adapters.genesys.provider import AsyncQueryProvider
from assist.adapters.queue import TaskQueue, attempts_retry
from assist.core.insights import InsightFilter, InsightScoring
from assist.core.models import RequestStatus
from assist.core.ranking import RankingWeights
from assist.security import CallbackVerifier, DeskAuthenticator
from assist.services.local_kb import LocalKnowledgeBase
from assist.services.records import Recorder
from assist.settings import Settings
from assist.stores.analytics import AnalyticsStore
from assist.stores.audit_log import AuditLog
from assist.stores.callbacks import RANK_RETRY, RECORDS_RETRY, CallbackAcks
from assist.stores.conversations import ConversationStore
from assist.stores.feedback import FeedbackStore
from assist.stores.idempotency import IdempotencyStore
from assist.stores.redis_client import RedisConnections
from assist.stores.requests import RequestStore


@dataclass
class Services:
    settings: Settings
    redis: RedisConnections
    #: The live queue (what an agent waits for) and the background one (deliveries).
    queue: TaskQueue
    background: TaskQueue
    requests: RequestStore
    conversations: ConversationStore
    feedback: FeedbackStore
    idempotency: IdempotencyStore
    analytics: AnalyticsStore
    recorder: Recorder
    #: The callback acknowledgement script and the outbox of its records.
    callback_acks: CallbackAcks
    desk_auth: DeskAuthenticator
    callback_verifier: CallbackVerifier
    weights: RankingWeights
    http_client: httpx.Client
    #: The per-provider circuit breakers (state in Redis, shared by every process).
    breaker: CircuitBreaker
    tokens: TokenProvider
    provider: AsyncQueryProvider
    analytics_sink: AnalyticsSink | None
    local_kb: LocalKnowledgeBase
    knowledge: GenesysKnowledge
    # Parsed from the settings once per process: every Copilot event and insight job uses them.
    insight_scoring: InsightScoring
    insight_filter: InsightFilter
    copilot: GenesysCopilot

    def close(self) -> None:
        self.http_client.close()
        self.redis.close()


def build_services(settings: Settings) -> Services:
    redis = RedisConnections.from_settings(settings)
    queue = TaskQueue(redis.raw, name=settings.queue_name, job_timeout_s=settings.job_timeout_s)
    background = TaskQueue(
        redis.raw, name=settings.background_queue_name, job_timeout_s=settings.job_timeout_s
    )
    analytics = AnalyticsStore(redis, maxlen=settings.analytics_stream_maxlen)
    http_client = httpx.Client(
        timeout=settings.genesys_timeout_s,
        headers={"User-Agent": "genesys-assist/0.1"},
        follow_redirects=False,
    )
    breaker = CircuitBreaker(
        redis.decoded,
        redis.keys,
        failures=settings.genesys_circuit_failures,
        open_s=settings.genesys_circuit_open_s,
        # A probe is one HTTP attempt: a process that dies while sending it frees it this late.
        probe_lease_s=settings.genesys_timeout_s + 1,
    )
    http = ResilientHttp(
        http_client,
        max_attempts=settings.genesys_max_attempts,
        max_retry_after_s=settings.genesys_max_retry_after_s,
        breaker=breaker,
    )
    tokens = TokenProvider(settings, http, redis)
    sink = (
        AnalyticsSink(
            http_client, settings.analytics_url, settings.analytics_token.get_secret_value()
        )
        if settings.analytics_url
        else None
    )
    return Services(
        settings=settings,
        redis=redis,
        queue=queue,
        background=background,
        requests=RequestStore(redis, ttl_s=settings.request_ttl_s),
        conversations=ConversationStore(
            redis, ttl_s=settings.request_ttl_s, feed_maxlen=settings.feed_stream_maxlen
        ),
        feedback=FeedbackStore(redis, mark_ttl_s=settings.callback_dedup_ttl_s),
        idempotency=IdempotencyStore(redis, ttl_s=settings.idempotency_ttl_s),
        analytics=analytics,
        recorder=Recorder(
            AuditLog(settings.audit_log_path, rotate=settings.audit_rotate),
            analytics,
            background,
            redis,
            deliver=sink is not None,
            budgets_ms=settings.latency_budgets_ms,
            delivery_retry=attempts_retry(settings.analytics_attempts, settings.analytics_retry_s),
        ),
        callback_acks=CallbackAcks(
            redis,
            rank_job=queue.prepare("rank_callback", retry=RANK_RETRY),
            records_job=background.prepare("write_callback_records", retry=RECORDS_RETRY),
            dedup_ttl_s=settings.callback_dedup_ttl_s,
            terminal_statuses=[s.value for s in RequestStatus if s.is_terminal],
        ),
        desk_auth=DeskAuthenticator(settings.desk_tokens),
        callback_verifier=CallbackVerifier(
            settings.callback_secrets,
            shared_secret_header=settings.callback_shared_secret_header,
            shared_secrets=settings.callback_shared_secrets,
        ),
        weights=RankingWeights(
            confidence=settings.rank_weight_confidence,
            skill=settings.rank_weight_skill,
            feedback=settings.rank_weight_feedback,
            skill_bonus=settings.rank_skill_bonus,
        ),
        http_client=http_client,
        breaker=breaker,
        local_kb=LocalKnowledgeBase(settings),
        knowledge=GenesysKnowledge(tokens, settings.api_base_url),
        insight_scoring=settings.copilot_scoring,
        insight_filter=settings.copilot_insight_filter,
        copilot=GenesysCopilot(tokens, settings.api_base_url),
        tokens=tokens,
        provider=AsyncQueryProvider(
            http, tokens, f"{settings.query_base_url}{settings.provider_query_path}"
        ),
        analytics_sink=sink,
    )
