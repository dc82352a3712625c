"""The desk and dashboard pages in a real browser (Debian chromium, driven by Playwright).

Every process is real (redis-server, emulator, gunicorn with gevent, rq worker). The tests
do what an agent and a supervisor would: open the desk for a conversation, ask a question,
watch ranked cards arrive live, accept one and see the dashboard's acceptance rate move;
survive a crash of the web tier without showing anything twice; and meet bad input with an
empty feed, a 401 page or a small message, never an error page where none is due.

Screenshots of both pages go to `test-artifacts/` at the repository root (not committed).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from playwright.sync_api import Browser, Page, expect, sync_playwright

from assist.stores.keys import Keys
from tests.processes import DESK_TOKEN, ProcessSystem

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CARDS = "[data-testid=suggestion-card]"
STATE = "[data-testid=connection-state]"
LIVE_S = 15_000  # ms: how long a page may take to (re)connect or show a ranking


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSystem]:
    extra_env = {
        "ASSIST_DESK_KNOWLEDGE_SOURCE_IDS": "kb-billing,kb-tech,kb-accounts",
        "ASSIST_FEED_KEEPALIVE_S": "2",
    }
    with ProcessSystem(tmp_path_factory.mktemp("browser"), extra_env=extra_env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian package `chromium`)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 820, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def desk_url(system: ProcessSystem, conversation_id: str, query: str = "") -> str:
    return (
        f"{system.web_url}/desk?conversationId={conversation_id}&access_token={DESK_TOKEN}{query}"
    )


def card_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator(CARDS).evaluate_all(
        "cards => cards.map(c => c.dataset.suggestionId)"
    )
    return ids


def audit_feedback(system: ProcessSystem, conversation_id: str, action: str) -> list[str]:
    """Suggestion ids with `action` feedback recorded in the audit log for the conversation."""
    if not system.audit_path.exists():
        return []
    lines = [json.loads(line) for line in system.audit_path.read_text().splitlines()]
    return [
        line["data"]["suggestion_id"]
        for line in lines
        if line["type"] == "feedback_recorded"
        and line["conversation_id"] == conversation_id
        and line["data"]["action"] == action
    ]


def wait_until(predicate: Any, timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not met within {timeout_s}s")


def dashboard_figures(page: Page) -> dict[str, Any]:
    """Refresh the dashboard's figures and read its totals (the numbers the page shows).

    Refresh, not a page reload: the page took the token out of its URL.
    """
    page.get_by_test_id("range-apply").click()
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    figures: dict[str, Any] = {
        name: page.get_by_test_id(f"total-{name}").get_attribute("data-value")
        for name in ("displayed", "accepted", "acceptance-rate")
    }
    figures["rate_text"] = page.get_by_test_id("total-acceptance-rate").inner_text()
    return figures


def source_row(page: Page, source: str) -> dict[str, str]:
    row = page.get_by_test_id("acceptance-by_knowledge_source").locator(f'tr[data-key="{source}"]')
    return {cell: row.locator(f"td.{cell}").inner_text() for cell in ("rate", "accepted")}


def test_desk_shows_live_ranking_and_acceptance_moves_the_dashboard(
    system: ProcessSystem, page: Page
) -> None:
    conversation_id = f"browser-{uuid.uuid4()}"
    page.goto(desk_url(system, conversation_id, "&agentId=agent-1&skills=billing"))
    expect(page.locator(STATE)).to_have_attribute("data-state", "live", timeout=LIVE_S)
    assert "access_token" not in page.url and DESK_TOKEN not in page.url
    expect(page.get_by_test_id("empty-state")).to_be_visible()

    dashboard = page.context.new_page()
    dashboard.goto(f"{system.web_url}/dashboard?access_token={DESK_TOKEN}")
    assert "access_token" not in dashboard.url
    before = dashboard_figures(dashboard)

    page.get_by_test_id("ask-input").fill("I was charged twice and want a refund")
    page.get_by_test_id("ask-submit").click()
    # The cards arrive through the live feed: no reload, no polling by the page.
    expect(page.get_by_test_id("ask-status")).to_contain_text("suggestion(s)", timeout=LIVE_S)
    expect(page.get_by_test_id("empty-state")).to_be_hidden()
    cards = page.locator(CARDS)
    request_id = cards.first.get_attribute("data-request-id")
    assert request_id
    ranking = system.wait_terminal(request_id)["suggestions"]
    assert ranking, "the emulator's billing articles should match"
    expect(cards).to_have_count(len(ranking))
    ids = card_ids(page)
    scores = [float(s) for s in cards.evaluate_all("cs => cs.map(c => c.dataset.score)")]
    assert ids == [s["id"] for s in sorted(ranking, key=lambda s: -s["score"])]
    assert scores == sorted(scores, reverse=True)
    first = cards.first
    expect(first.get_by_test_id("card-title")).to_have_text(ranking[0]["title"])
    expect(first.get_by_test_id("card-score")).to_have_text(f"{ranking[0]['score']:.3f}")
    # Each card reported `displayed` exactly once.
    wait_until(lambda: sorted(audit_feedback(system, conversation_id, "displayed")) == sorted(ids))

    first.get_by_test_id("card-why-toggle").click()
    expect(first.get_by_test_id("card-why")).to_be_visible()
    expect(first.get_by_test_id("card-why")).to_contain_text("Matched skills: billing")
    first.get_by_test_id("card-accept").click()
    expect(first).to_have_attribute("data-state", "accepted")
    expect(first.get_by_test_id("card-accept")).to_have_text("Accepted")
    expect(first.get_by_test_id("card-message")).to_be_hidden()

    after_one = dashboard_figures(dashboard)
    assert int(after_one["displayed"]) == int(before["displayed"] or 0) + len(ids)
    assert int(after_one["accepted"]) == int(before["accepted"] or 0) + 1
    summary = system.desk.get("/v1/analytics/summary").json()
    assert float(after_one["acceptance-rate"]) == summary["totals"]["acceptance_rate"]
    source = ranking[0]["knowledge_source_ids"][0]
    api_row = next(r for r in summary["acceptance"]["by_knowledge_source"] if r["key"] == source)
    assert source_row(dashboard, source)["accepted"] == str(api_row["accepted"])

    # A second acceptance: the dashboard's acceptance rate changes with it.
    second = cards.nth(1)
    second.get_by_test_id("card-accept").click()
    expect(second).to_have_attribute("data-state", "accepted")
    after_two = dashboard_figures(dashboard)
    assert int(after_two["accepted"]) == int(after_one["accepted"]) + 1
    assert float(after_two["acceptance-rate"]) > float(after_one["acceptance-rate"])
    assert after_two["rate_text"] != after_one["rate_text"]

    # The other buttons: copy (clipboard), open (full text), dismiss (the card goes away).
    # Copying counts as adopting, so it goes on an accepted card: the rate stays put.
    second.get_by_test_id("card-copy").click()
    expect(second.get_by_test_id("card-message")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()").startswith(ranking[1]["title"])
    assert len(ranking) >= 3
    third = cards.nth(2)
    third.get_by_test_id("card-open").click()
    expect(third.get_by_test_id("card-open")).to_have_text("Opened")
    expect(third.get_by_test_id("card-snippet")).to_have_text(ranking[2]["content"])
    page.screenshot(path=ARTIFACTS / "desk.png", full_page=True)
    third.get_by_test_id("card-dismiss").click()
    expect(page.locator(f'{CARDS}[data-suggestion-id="{ranking[2]["id"]}"]')).to_have_count(0)
    wait_until(lambda: audit_feedback(system, conversation_id, "copied") == [ranking[1]["id"]])
    for action in ("opened", "dismissed"):
        wait_until(
            lambda a=action: audit_feedback(system, conversation_id, a) == [ranking[2]["id"]]
        )
    final = dashboard_figures(dashboard)
    assert final["acceptance-rate"] == after_two["acceptance-rate"]
    gaps = dashboard.get_by_test_id("dismissed").locator(f'tr[data-key="{ranking[2]["id"]}"]')
    expect(gaps).to_contain_text(ranking[2]["title"][:20])
    dashboard.set_viewport_size({"width": 1280, "height": 900})
    dashboard.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

    # Other time ranges: the last hour holds all of it; a custom range in the past, none.
    body, accepted = dashboard.locator("body"), dashboard.get_by_test_id("total-accepted")
    dashboard.get_by_test_id("range-select").select_option("1")
    expect(body).to_have_attribute("data-state", "ready")
    expect(accepted).to_have_attribute("data-value", final["accepted"])
    dashboard.get_by_test_id("range-select").select_option("custom")
    dashboard.get_by_test_id("range-from").fill("2020-01-01T00:00")
    dashboard.get_by_test_id("range-to").fill("2020-01-02T00:00")
    dashboard.get_by_test_id("range-apply").click()
    expect(body).to_have_attribute("data-state", "ready")
    expect(accepted).to_have_attribute("data-value", "0")
    expect(dashboard.get_by_test_id("acceptance-by_article")).to_contain_text("No data")


def _kill_web(system: ProcessSystem) -> None:
    """SIGKILL gunicorn's master and its workers: the whole web tier dies at once."""
    master = system.processes["web"]
    workers = psutil.Process(master.pid).children(recursive=True)
    system.stop_process("web", signal.SIGKILL)
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signal.SIGKILL)
    psutil.wait_procs(workers, timeout=10)


def test_the_feed_resumes_after_the_web_tier_dies_without_duplicates(
    system: ProcessSystem, page: Page
) -> None:
    conversation_id = f"browser-{uuid.uuid4()}"
    page.goto(desk_url(system, conversation_id, "&agentId=agent-2&skills=tech-support"))
    expect(page.locator(STATE)).to_have_attribute("data-state", "live", timeout=LIVE_S)
    first = system.trigger(
        conversation_id=conversation_id,
        transcript="I was charged twice on my bill and want a refund",
        knowledge_source_ids=["kb-billing"],
    ).json()["request_id"]
    first_ids = [s["id"] for s in system.wait_terminal(first)["suggestions"]]
    expect(page.locator(CARDS)).to_have_count(len(first_ids), timeout=LIVE_S)

    _kill_web(system)
    expect(page.locator(STATE)).to_have_attribute("data-state", "reconnecting")
    page.screenshot(path=ARTIFACTS / "desk-reconnecting.png", full_page=True)
    system.start_web()
    system.wait_http(f"{system.web_url}/readyz")
    expect(page.locator(STATE)).to_have_attribute("data-state", "live", timeout=LIVE_S)

    second = system.trigger(
        conversation_id=conversation_id,
        transcript="my router keeps dropping the wifi connection",
        knowledge_source_ids=["kb-tech"],
        agent_skills=["tech-support"],
    ).json()["request_id"]
    second_ids = [s["id"] for s in system.wait_terminal(second)["suggestions"]]
    assert second_ids and not set(second_ids) & set(first_ids)
    expect(page.locator(CARDS)).to_have_count(len(first_ids) + len(second_ids), timeout=LIVE_S)
    ids = card_ids(page)
    assert len(ids) == len(set(ids))
    assert ids == second_ids + first_ids  # newest ranking on top
    # The reconnect resumed after the last event: two batches arrived, none replayed.
    expect(page.get_by_test_id("cards")).to_have_attribute("data-batches", "2")
    expect(page.locator(STATE)).to_have_attribute("data-state", "live")
    # `displayed` reports caught by the crash were retried: every card's is recorded.
    wait_until(
        lambda: set(audit_feedback(system, conversation_id, "displayed")) == set(ids),
        timeout_s=20,
    )
    expect(page.get_by_test_id("card-message").filter(visible=True)).to_have_count(0)


def test_bad_input_gives_an_empty_feed_a_401_page_or_a_small_message(
    system: ProcessSystem, page: Page
) -> None:
    # An unknown conversation is an empty feed that is live, not an error.
    unknown = f"browser-unknown-{uuid.uuid4()}"
    page.goto(desk_url(system, unknown))
    expect(page.locator(STATE)).to_have_attribute("data-state", "live", timeout=LIVE_S)
    expect(page.get_by_test_id("empty-state")).to_have_text("Waiting for suggestions…")
    expect(page.locator(CARDS)).to_have_count(0)

    # A wrong token: the 401 page, which does not echo the token.
    response = page.goto(f"{system.web_url}/desk?conversationId={unknown}&access_token=wrong")
    assert response is not None and response.status == 401
    expect(page.get_by_test_id("error-page")).to_contain_text("Sign-in needed")
    page.screenshot(path=ARTIFACTS / "error-401.png")
    assert "wrong" not in page.get_by_test_id("error-message").inner_text()

    # A malformed Last-Event-ID starts the feed afresh instead of failing.
    conversation_id = f"browser-{uuid.uuid4()}"
    request_id = system.trigger(
        conversation_id=conversation_id,
        transcript="lost my card",
        knowledge_source_ids=["kb-accounts"],
    ).json()["request_id"]
    system.wait_terminal(request_id)
    with httpx.stream(
        "GET",
        f"{system.web_url}/v1/conversations/{conversation_id}/events",
        headers={"Authorization": f"Bearer {DESK_TOKEN}", "Last-Event-ID": "not-an-id"},
        timeout=10,
    ) as feed:
        assert feed.status_code == 200
        first_event = next(line for line in feed.iter_lines() if line.startswith("data:"))
    assert json.loads(first_event[5:])["request_id"] == request_id

    # Feedback the server cannot attribute: the conversation's suggestions are gone from
    # Redis (as when its retention expires while the desk stays open). The API answers 404
    # unknown_suggestion and the card shows a small message instead of failing silently.
    page.goto(desk_url(system, conversation_id, "&agentId=agent-3"))
    card = page.locator(CARDS).first
    expect(card).to_be_visible(timeout=LIVE_S)
    wait_until(lambda: audit_feedback(system, conversation_id, "displayed"))
    store = redis.Redis.from_url(system.redis.url)
    try:
        store.delete(Keys("assist:v1").conversation_suggestions(conversation_id))
    finally:
        store.close()
    card.get_by_test_id("card-accept").click()
    message = card.get_by_test_id("card-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("no longer knows this suggestion")
    expect(card).not_to_have_attribute("data-state", "accepted")
    # Nothing about it was recorded; and the token was never written to the web log.
    assert not audit_feedback(system, conversation_id, "accepted")
    assert DESK_TOKEN not in (system.logs / "web.log").read_text()
