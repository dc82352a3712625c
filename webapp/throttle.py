"""Rate limits of the desk endpoints that create work: `POST /v1/suggestions` and
`POST /v1/feedback`, each counted apart, per agent desk and per client address.

- Agent desk: the body's `agent_id` together with its `conversation_id`. The desk token is
  shared by every desk of an organisation, and a desk opened without `agentId` sends one
  placeholder agent id, so neither alone tells desks apart; one desk serves one
  conversation. Agent ids come from the caller, so this limit stops a runaway desk, not an
  attacker: the address limit does that.
- Client address: `request.remote_addr`, which is the TCP peer unless
  `ASSIST_TRUSTED_PROXY_HOPS` lets werkzeug's ProxyFix take it from `X-Forwarded-For`. IPv6
  addresses count per /64, the block one subscriber usually holds.

Over a limit: 429 `rate_limited` in the one error shape, with `Retry-After` in whole seconds.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, current_app, request

from assist.errors import RateLimitedError
from assist.security import digest
from assist.settings import Settings
from assist.stores.rate_limits import AGENT, RateLimits
from assist.stores.redis_client import RedisConnections
from webapp.context import bind

EXTENSION_KEY = "assist.rate_limits"
TRIGGER = "trigger"
FEEDBACK = "feedback"


def init_app(app: Flask, settings: Settings, redis: RedisConnections) -> None:
    app.extensions[EXTENSION_KEY] = RateLimits.from_settings(settings, redis)


def client_address(remote_addr: str | None) -> str:
    """The address a client is counted under (IPv6: its /64; IPv4-mapped IPv6: the IPv4)."""
    if not remote_addr:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        # Only a trusted proxy's X-Forwarded-For can put a non-address here.
        return f"invalid-{digest(remote_addr)}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def enforce(endpoint: str, *, agent_id: str | None, conversation_id: str) -> None:
    """Count this request; raise `RateLimitedError` (429) if it is over a limit."""
    limits: RateLimits = current_app.extensions[EXTENSION_KEY]
    if not limits.enabled:
        return
    exceeded = limits.hit(
        endpoint,
        agent=(agent_id or "", conversation_id),
        address=client_address(request.remote_addr),
    )
    if exceeded is None:
        return
    who = "agent desk (agent and conversation)" if exceeded.scope == AGENT else "client address"
    bind(rate_limited=exceeded.scope)
    raise RateLimitedError(
        f"too many requests from this {who}: the limit is {exceeded.limit}; "
        f"retry after {exceeded.retry_after_s} s",
        retry_after_s=exceeded.retry_after_s,
        details=[
            {
                "field": None,
                "message": f"{exceeded.limit} per {who}",
                "type": "rate_limit",
                "scope": exceeded.scope,
                "limit": exceeded.limit,
            }
        ],
    )
