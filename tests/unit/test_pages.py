"""The desk and dashboard pages: desk-token auth, inputs, the embedded config, headers, logs.

The pages need no Redis (make_settings points it at 127.0.0.1:1, where nothing listens), so
every case here runs on the Flask test client.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import AUTH, DESK_TOKEN, make_settings
from webapp import create_app
from webapp.services import EXTENSION_KEY

_CONFIG_BLOCK = re.compile(
    r'<script type="application/json" id="assist-config">(.*?)</script>', re.DOTALL
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    settings = make_settings(
        tmp_path_factory.mktemp("pages"), desk_knowledge_source_ids="kb-billing,kb-tech"
    )
    built = create_app(settings)
    yield built
    built.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def page_config(response: TestResponse) -> dict[str, Any]:
    html = response.get_data(as_text=True)
    blocks = _CONFIG_BLOCK.findall(html)
    assert len(blocks) == 1, html
    config: dict[str, Any] = json.loads(blocks[0])
    return config


def desk(client: FlaskClient, query: str, **kwargs: Any) -> TestResponse:
    return client.get(f"/desk?{query}", **kwargs)


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/desk?conversationId=conv-1", "/dashboard"])
def test_without_a_token_the_pages_answer_a_401_html_page(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-testid="error-page"' in html and "access_token" in html
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/desk?conversationId=conv-1", "/dashboard"])
def test_a_wrong_token_is_a_401_page_too(client: FlaskClient, path: str) -> None:
    response = client.get(f"{path}{'&' if '?' in path else '?'}access_token=not-the-token")
    assert response.status_code == 401
    assert "invalid desk token" in response.get_data(as_text=True)
    assert "not-the-token" not in response.get_data(as_text=True)


def test_the_bearer_header_works_and_its_token_reaches_the_page(client: FlaskClient) -> None:
    response = desk(client, "conversationId=conv-1", headers=AUTH)
    assert response.status_code == 200
    assert page_config(response)["token"] == DESK_TOKEN


def test_the_dashboard_renders_with_the_query_token(client: FlaskClient) -> None:
    response = client.get(f"/dashboard?access_token={DESK_TOKEN}")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert page_config(response) == {"token": DESK_TOKEN}
    assert "/static/dashboard.js" in response.get_data(as_text=True)


# --- the desk's inputs -----------------------------------------------------------------------


def test_the_desk_config_carries_conversation_agent_skills_and_sources(
    client: FlaskClient,
) -> None:
    response = desk(
        client,
        f"conversationId=conv-42&agentId=agent-1&skills=billing,%20retention&"
        f"sources=kb-accounts&access_token={DESK_TOKEN}",
    )
    assert response.status_code == 200
    assert page_config(response) == {
        "conversationId": "conv-42",
        "agentId": "agent-1",
        "agentSkills": ["billing", "retention"],
        "knowledgeSourceIds": ["kb-accounts"],
        "token": DESK_TOKEN,
    }


def test_sources_default_to_the_desk_setting(client: FlaskClient) -> None:
    config = page_config(desk(client, "conversationId=conv-1", headers=AUTH))
    assert config["knowledgeSourceIds"] == ["kb-billing", "kb-tech"]
    assert config["agentId"] is None and config["agentSkills"] == []


@pytest.mark.parametrize("name", ["gcConversationId", "conversation_id"])
def test_the_genesys_widget_parameter_names_are_accepted(client: FlaskClient, name: str) -> None:
    response = desk(client, f"{name}=a1b2c3d4-0000-4000-8000-000000000001", headers=AUTH)
    assert response.status_code == 200
    assert page_config(response)["conversationId"] == "a1b2c3d4-0000-4000-8000-000000000001"


def test_without_a_conversation_id_the_desk_is_a_400_page(client: FlaskClient) -> None:
    response = desk(client, "agentId=agent-1", headers=AUTH)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "conversationId" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "query",
    [
        "conversationId=%3C/script%3E%3Cscript%3Ealert(1)%3C/script%3E",
        "conversationId=" + "a" * 129,
        "conversationId=conv-1&agentId=agent%201",
        "conversationId=conv-1&sources=kb%22billing",
        "conversationId=conv-1&sources=" + ",".join(f"kb-{i}" for i in range(11)),
        "conversationId=conv-1&skills=" + "s" * 65,
    ],
)
def test_malformed_ids_are_a_400_page_never_rendered(client: FlaskClient, query: str) -> None:
    response = desk(client, query, headers=AUTH)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "<script>alert" not in html
    assert "assist-config" not in html


def test_free_text_in_the_config_is_escaped_inside_the_json_block(client: FlaskClient) -> None:
    # Skills are free labels; one that closes the script element must stay data.
    skill = "</script><img src=x onerror=alert(1)>"
    response = client.get(
        "/desk", query_string={"conversationId": "conv-1", "skills": skill}, headers=AUTH
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert skill not in html
    assert page_config(response)["agentSkills"] == [skill]


# --- headers and logs ------------------------------------------------------------------------


def policy(response: TestResponse) -> dict[str, str]:
    header = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


@pytest.mark.parametrize("path", ["/desk?conversationId=conv-1", "/dashboard"])
def test_security_headers(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers=AUTH)
    assert response.status_code == 200
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in headers
    csp = policy(response)
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["default-src"] == "'none'"
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert "unsafe-eval" not in headers["Content-Security-Policy"]
    # Only this origin and the configured region's Genesys Cloud apps may frame the pages.
    assert csp["frame-ancestors"].split() == ["'self'", "https://*.mypurecloud.com"]


@pytest.mark.parametrize("path", ["/desk?conversationId=conv-1", "/dashboard", "/desk"])
def test_error_pages_carry_the_same_headers(client: FlaskClient, path: str) -> None:
    # 401 without a token; 400 for the desk without a conversation id.
    for response in (client.get(path), client.get(path, headers=AUTH)):
        if response.status_code == 200:
            continue
        assert response.status_code in (400, 401)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert policy(response)["frame-ancestors"] == "'self' https://*.mypurecloud.com"
        assert policy(response)["script-src"] == "'self'"


def test_frame_ancestors_follow_the_configured_genesys_region(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    app = create_app(
        make_settings(tmp_path_factory.mktemp("region"), genesys_env="usw2.pure.cloud")
    )
    try:
        response = app.test_client().get("/desk?conversationId=conv-1", headers=AUTH)
        assert response.status_code == 200
        ancestors = policy(response)["frame-ancestors"].split()
        assert ancestors == ["'self'", "https://*.usw2.pure.cloud"]
        # Another region (another Genesys organisation's apps) may not embed the desk.
        assert "https://*.mypurecloud.com" not in ancestors
    finally:
        app.extensions[EXTENSION_KEY].close()


@pytest.mark.parametrize("path", ["/desk?conversationId=conv-1", "/dashboard"])
def test_the_pages_have_no_inline_script(client: FlaskClient, path: str) -> None:
    # What a CSP without 'unsafe-inline' would block: the pages must work without it.
    html = client.get(path, headers=AUTH).get_data(as_text=True)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'type="application/json"' in tag or re.search(r"\bsrc=", tag), tag
    for block in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL):
        attributes, content = block
        assert not content.strip() or 'type="application/json"' in attributes
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler attribute"
    assert "javascript:" not in html.lower()


def test_the_static_assets_are_served(client: FlaskClient) -> None:
    for name in ("desk.js", "dashboard.js", "assist.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        response.close()


def test_the_token_never_reaches_the_logs(client: FlaskClient) -> None:
    # Capture exactly what the process would print: the root handler's formatter.
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        assert desk(client, f"conversationId=conv-log&access_token={DESK_TOKEN}").status_code == 200
        assert client.get(f"/dashboard?access_token={DESK_TOKEN}").status_code == 200
        assert client.get("/dashboard?access_token=wrong-token-value").status_code == 401
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(r["path"], r["status"]) for r in requests] == [
        ("/desk", 200),
        ("/dashboard", 200),
        ("/dashboard", 401),
    ]
    assert DESK_TOKEN not in buffer.getvalue()
    assert "wrong-token-value" not in buffer.getvalue()
    assert "access_token" not in buffer.getvalue()
