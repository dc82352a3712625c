"""Acknowledging provider callbacks in one Redis round trip, and the outbox of their records.

`CallbackAcks.acknowledge` runs one server-side script (EVALSHA; redis-py loads it again
after a Redis restart) that does, atomically:

1. resolve the provider request id to our request (or take the `?request_id=` hint when the
   submission job has not bound the provider id yet and the request is not bound to another);
2. decide: unknown (nothing written), duplicate (the `webhook-id` was seen, or a final
   callback for this provider request was already accepted), late (the request is terminal);
3. for a new delivery: the `webhook-id` marker, the provider binding and, for a final one, the
   final marker and the `rank_callback` job: its RQ job hash with the fields RQ's own
   `Job.to_dict` writes (`TaskQueue.prepare`), its id pushed on the queue, the queue added to
   RQ's set of queues, as `Queue.enqueue_job` does;
4. for every delivery that resolved to a request, new or duplicate: its `callback_received`
   record staged in an outbox list, and a `write_callback_records` job enqueued on the
   background queue when none is pending (a flag, as for analytics delivery).

With `appendfsync always` the reply only leaves Redis after all of it is on disk, so a 2xx is
never sent for a callback whose dedup marker, job or record could be lost, and a callback is
never half-acknowledged. The web process writes no file: the worker turns the outbox into
audit lines (one append per batch) and analytics records (`write_callback_records`).

The script derives the request and job keys from ids it reads in Redis, so it needs every key
on one Redis server (as the transactions elsewhere do); it is not Redis Cluster-ready.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.lock import Lock
from rq import Retry

from assist.adapters.queue import PreparedJob
from assist.stores.redis_client import RedisConnections

# A ranking job that dies with its worker is retried by RQ's abandoned-job cleanup
# (workers/rq_worker.py): the first retry at once, at the front of the queue (it has waited
# longest). The job is idempotent (the request's status is checked in the transaction that
# completes it). The records writer is idempotent too (its claim, `write_callback_records`).
RANK_RETRY = Retry(max=3, interval=[0, 5, 30], enqueue_at_front=True)
RECORDS_RETRY = Retry(max=3, interval=[0, 5, 30], enqueue_at_front=True)
#: Longer than the writer job's whole retry schedule; after it lapses the next callback
#: schedules a writer afresh (so a lost job cannot strand the outbox for long).
RECORDS_FLAG_TTL_S = 900

ACK_SCRIPT = """
local prefix, hint, provider_id = ARGV[1], ARGV[2], ARGV[3]
local final, ttl, terminal = ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6]
local rank_args_tail, now = ARGV[7], ARGV[8]
local rank_fields, record = ARGV[9], ARGV[10]
local records_job_id, records_fields = ARGV[11], ARGV[12]
local job_prefix, rank_func, records_func = ARGV[13], ARGV[14], ARGV[15]
local description = ARGV[16]

local function enqueue(queue_key, job_id, func, args, fields, desc)
  redis.call('HSET', job_prefix .. job_id, 'created_at', now, 'enqueued_at', now,
    'data', '[' .. cjson.encode(func) .. ',null,' .. args .. ',{}]',
    'description', desc, unpack(cjson.decode(fields)))
  redis.call('SADD', KEYS[7], queue_key)
  redis.call('RPUSH', queue_key, job_id)
end

local rid = redis.call('GET', KEYS[1])
local raw = false
if rid then
  raw = redis.call('GET', prefix .. rid)
elseif hint ~= '' then
  local hinted = redis.call('GET', prefix .. hint)
  if hinted then
    local bound = cjson.decode(hinted)['provider_request_id']
    if bound == nil or bound == cjson.null or bound == provider_id then
      rid, raw = hint, hinted
    end
  end
end
if not raw then
  return {'unknown'}
end
local request = cjson.decode(raw)
local status = request['status']
local late = string.find(terminal, ',' .. status .. ',', 1, true) ~= nil
local duplicate = (KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1)
  or (final and redis.call('EXISTS', KEYS[3]) == 1)
local outcome = 'duplicate'
if not duplicate then
  if KEYS[2] ~= '' then
    redis.call('SET', KEYS[2], '1', 'EX', ttl)
  end
  redis.call('SET', KEYS[1], rid, 'EX', ttl)
  if final then
    redis.call('SET', KEYS[3], rid, 'EX', ttl)
  end
  if late then
    outcome = 'ignored'
  elseif not final then
    outcome = 'acknowledged'
  else
    local job_id = 'rank-' .. rid
    enqueue(KEYS[6], job_id, rank_func, '[' .. cjson.encode(rid) .. rank_args_tail, rank_fields,
      description .. '(' .. cjson.encode(rid) .. ')')
    outcome = 'queued'
  end
end
local entry = cjson.decode(record)
entry['request_id'] = rid
entry['conversation_id'] = request['conversation_id']
entry['agent_id'] = request['agent_id']
entry['created_at'] = request['created_at']
entry['duplicate'] = duplicate
entry['late'] = late
redis.call('RPUSH', KEYS[4], cjson.encode(entry))
if redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[17]) then
  enqueue(KEYS[8], records_job_id, records_func, '[]', records_fields, records_func .. '()')
end
return {outcome, rid, status}
"""

Outcome = Literal["unknown", "duplicate", "ignored", "acknowledged", "queued"]


@dataclass(frozen=True)
class Acknowledgement:
    outcome: Outcome
    #: Our request id and its status when the callback arrived (None when unknown).
    request_id: str | None = None
    status: str | None = None


class CallbackAcks:
    def __init__(
        self,
        redis: RedisConnections,
        *,
        rank_job: PreparedJob,
        records_job: PreparedJob,
        dedup_ttl_s: int,
        terminal_statuses: Iterable[str],
    ) -> None:
        if (rank_job.queues_key, rank_job.job_key_prefix) != (
            records_job.queues_key,
            records_job.job_key_prefix,
        ):
            raise ValueError("the script writes both jobs in one RQ namespace")
        self._redis = redis
        self._keys = redis.keys
        self._script = redis.raw.register_script(ACK_SCRIPT)
        self._rank = rank_job
        self._records = records_job
        self._rank_fields = json.dumps(rank_job.fields)
        self._records_fields = json.dumps(records_job.fields)
        self._ttl = str(dedup_ttl_s)
        self._terminal = "," + ",".join(terminal_statuses) + ","

    def acknowledge(
        self,
        *,
        provider_request_id: str,
        request_id_hint: str | None,
        message_key: str | None,
        final: bool,
        payload_json: str,
        received_at: str,
        enqueued_at: str,
        record: dict[str, Any],
        records_job_id: str,
    ) -> Acknowledgement:
        """Run the script. `record`: the `callback_received` fields known before the lookup
        (`event_id`, `received_at`, ...); the script adds the request's and the outcome's.
        `enqueued_at`: now, as RQ writes times (`rq_timestamp`)."""
        keys = self._keys
        reply = self._script(
            keys=[
                keys.provider_request(provider_request_id),
                message_key or "",
                keys.callback_final(provider_request_id),
                keys.callback_records(),
                keys.callback_records_flag(),
                self._rank.queue_key,
                self._rank.queues_key,
                self._records.queue_key,
            ],
            args=[
                keys.request_prefix(),
                request_id_hint or "",
                provider_request_id,
                "1" if final else "0",
                self._ttl,
                self._terminal,
                f",{payload_json},{json.dumps(received_at)}]",
                enqueued_at,
                self._rank_fields,
                json.dumps(record, separators=(",", ":")),
                records_job_id,
                self._records_fields,
                self._rank.job_key_prefix,
                self._rank.func,
                self._records.func,
                self._rank.func,
                str(RECORDS_FLAG_TTL_S),
            ],
        )
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        if values[0] == "unknown":
            return Acknowledgement("unknown")
        return Acknowledgement(cast(Outcome, values[0]), values[1], values[2])

    # --- the outbox, for the writer job ------------------------------------------------------

    def head(self, count: int) -> list[dict[str, Any]]:
        """The oldest `count` staged records (they stay until `release`)."""
        raw = self._redis.raw.lrange(self._keys.callback_records(), 0, count - 1)
        return [json.loads(item) for item in cast(list[bytes], raw)]

    def pending(self) -> int:
        return int(self._redis.raw.llen(self._keys.callback_records()))

    def claimed(self) -> int:
        """Records a writer claimed and may have written before it died (0: none)."""
        value = self._redis.raw.get(self._keys.callback_records_claim())
        return int(cast(bytes, value)) if value else 0

    def claim(self, count: int) -> None:
        self._redis.raw.set(self._keys.callback_records_claim(), count)

    def release(self, count: int) -> None:
        """Drop the first `count` records (written) and the claim on them, together."""
        with self._redis.raw.pipeline(transaction=True) as pipe:
            pipe.ltrim(self._keys.callback_records(), count, -1)
            pipe.delete(self._keys.callback_records_claim())
            pipe.execute()

    def clear_flag(self) -> None:
        self._redis.raw.delete(self._keys.callback_records_flag())

    def lock(self, timeout_s: int) -> Lock:
        lock: Lock = self._redis.raw.lock(self._keys.callback_records_lock(), timeout=timeout_s)
        return lock
