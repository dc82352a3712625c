"""The two browser pages: the agent desk (`GET /desk`) and the dashboard (`GET /dashboard`).

Both are plain Jinja templates with a small vanilla script each (`webapp/static/`), no build
step. They authenticate like the API: the desk token comes as `Authorization: Bearer` or, as
a Genesys Cloud interaction widget URL can only carry it, as the `access_token` query
parameter (only the path is ever logged; the page removes the parameter from the address bar
and sends no Referer). The page's settings travel as one JSON block that is data, not script.

Every answer carries `Cache-Control: no-store`, `Referrer-Policy: no-referrer`,
`X-Content-Type-Options: nosniff` and a Content-Security-Policy that allows scripts, styles
and connections to this origin only (no inline script) and lets only this origin and the
Genesys Cloud apps of the configured region (`https://*.<GENESYS_ENV>`, where the
interaction widget runs) frame the pages.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, render_template, request

from assist.errors import AuthenticationError
from webapp.services import services

bp = Blueprint("pages", __name__)

# The API's identifier pattern (webapp.schemas.Identifier, the feed's conversation id).
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_MAX_SKILLS = 50
_MAX_SKILL_CHARS = 64
_MAX_SOURCES = 10


@lru_cache(maxsize=4)
def content_security_policy(genesys_env: str) -> str:
    """The pages' policy; `genesys_env` (a validated domain) is the Genesys Cloud region whose
    apps (e.g. apps.mypurecloud.com, apps.usw2.pure.cloud) may frame the desk as a widget."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors 'self' https://*.{genesys_env}",
        )
    )


# Interaction-widget URL templates name the conversation differently; all are accepted.
CONVERSATION_PARAMS = ("conversationId", "gcConversationId", "conversation_id")


class PageInputError(Exception):
    """A query parameter a page cannot work with (answered with a 400 page)."""


def _page(
    template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = content_security_policy(
        services().settings.genesys_env
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error_page(status: int, title: str, message: str) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="genesys-assist"'} if status == 401 else None
    return _page("error.html", status, headers, code=status, title=title, message=message)


def _authenticated_token() -> str:
    """The desk token the caller authenticated with (raises `AuthenticationError`)."""
    authorization = request.headers.get("Authorization")
    query_token = request.args.get("access_token")
    services().desk_auth.authenticate(authorization, query_token)
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query_token or ""


def _unauthorized(exc: AuthenticationError) -> Response:
    return _error_page(
        401,
        "Sign-in needed",
        f"This page needs a valid desk token ({exc.message}). Open it with "
        "?access_token=<desk token> in the URL, as the Genesys Cloud interaction widget "
        "URL configured by your administrator does. The page removes the token from the "
        "address bar once loaded, so after a browser reload open it again from its link.",
    )


def _identifier(name: str, value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise PageInputError(f"{name} must be 1-128 characters of letters, digits and . _ : @ -")
    return value


def _comma_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _desk_config(token: str) -> dict[str, Any]:
    conversation_id = next(
        (request.args[name] for name in CONVERSATION_PARAMS if request.args.get(name)), None
    )
    if conversation_id is None:
        raise PageInputError(
            "the desk needs the conversation: open it with ?conversationId=<conversation id> "
            "(gcConversationId is accepted too)"
        )
    _identifier("conversationId", conversation_id)
    agent_id = request.args.get("agentId") or None
    if agent_id is not None:
        _identifier("agentId", agent_id)
    skills = _comma_list(request.args.get("skills"))
    if len(skills) > _MAX_SKILLS or any(len(s) > _MAX_SKILL_CHARS for s in skills):
        raise PageInputError(
            f"skills: at most {_MAX_SKILLS}, each at most {_MAX_SKILL_CHARS} characters"
        )
    sources = _comma_list(request.args.get("sources")) or list(
        services().settings.desk_knowledge_source_ids
    )
    if len(sources) > _MAX_SOURCES:
        raise PageInputError(f"sources: at most {_MAX_SOURCES} knowledge source ids")
    for source in sources:
        _identifier("sources", source)
    return {
        "conversationId": conversation_id,
        "agentId": agent_id,
        "agentSkills": skills,
        "knowledgeSourceIds": sources,
        "token": token,
    }


@bp.get("/desk")
def desk() -> Response:
    try:
        token = _authenticated_token()
    except AuthenticationError as exc:
        return _unauthorized(exc)
    try:
        config = _desk_config(token)
    except PageInputError as exc:
        return _error_page(400, "Cannot open the desk", str(exc))
    return _page("desk.html", config=config, conversation_id=config["conversationId"])


@bp.get("/dashboard")
def dashboard() -> Response:
    try:
        token = _authenticated_token()
    except AuthenticationError as exc:
        return _unauthorized(exc)
    return _page("dashboard.html", config={"token": token})
