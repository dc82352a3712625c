"""Run the whole system locally and show it working: `make run`.

1. Creates `.env` from `.env.example` if there is none.
2. Starts `honcho -f Procfile.dev start` (web, worker, a local redis-server from the venv,
   the Genesys emulator) with the venv's `bin/` first on PATH.
3. Waits for `/readyz` and for the local knowledge base (the worker ingests `kb/northwind` at
   start), plays a demo trigger (two emulator sources and the local one), polls until it is
   ranked and prints the suggestions with the components of their scores.
4. Keeps everything running until Ctrl-C.

`--demo-only` skips 1, 2 and 4 and plays the demo against a system that is already running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Redis keeps its data in var/ between runs, and a conversation shows an article only once (and
# a finished call is not followed again): each run gets conversations of its own.
RUN = time.strftime("%H%M%S")
DEMO = {
    "conversation_id": f"demo-conversation-{RUN}",
    "agent_id": "agent-ana",
    "agent_skills": ["billing"],
    # kb-billing and kb-accounts: the emulator's async-query provider; kb-tech: its Genesys
    # Knowledge search (genesys-knowledge); kb-northwind: the local knowledge base the worker
    # ingests from kb/northwind at start (local-kb).
    "knowledge_source_ids": ["kb-billing", "kb-accounts", "kb-tech", "kb-northwind"],
    "transcript": (
        "Hi, I was charged twice on my last bill and I want a refund. "
        "My card is 4111 1111 1111 1111 and my email is pat@example.com."
    ),
}


def load_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def wait_ready(base_url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the web process did not become ready at {base_url} within {timeout_s}s")


def wait_local_kb(base_url: str, timeout_s: float = 300) -> None:
    """Wait until every local knowledge base is ready (the worker ingests it at start)."""
    deadline = time.monotonic() + timeout_s
    said = False
    while time.monotonic() < deadline:
        try:
            checks = httpx.get(f"{base_url}/readyz", timeout=2).json().get("checks", {})
        except (httpx.HTTPError, ValueError):
            checks = {}
        pending = [
            source
            for source, status in checks.get("local_kb", {}).items()
            if status.get("status") != "ready"
        ]
        if not pending:
            return
        if not said:
            print(
                f"waiting for the worker to ingest the local knowledge base {', '.join(pending)} "
                "(the first time embeds a few hundred passages: about a minute on 2 cores) ..."
            )
            said = True
        time.sleep(1)
    print("the local knowledge base is not ready yet; the demo goes on without its hits")


def missing_settings(env_file: Path) -> list[str]:
    """Settings `.env.example` has and an older `.env` lacks."""
    example = load_env(ROOT / ".env.example")
    return sorted(set(example) - set(load_env(env_file)))


def play_demo(base_url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        accepted = client.post("/v1/suggestions", json=DEMO)
        print(f"\nPOST /v1/suggestions -> {accepted.status_code} {accepted.json()}")
        if accepted.status_code != 202:
            return 1
        status_url = accepted.json()["status_url"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = client.get(status_url).json()
            if view["status"] in ("completed", "failed", "expired"):
                break
            time.sleep(0.3)
        print(f"GET {status_url} -> status {view['status']}")
        if view["status"] != "completed":
            print(f"  error: {view.get('error')}")
            return 1
        print(
            f"\nRanked suggestions for {DEMO['conversation_id']} (agent skills "
            f"{DEMO['agent_skills']}):"
        )
        for s in view["suggestions"]:
            why = s["why"]
            print(
                f"  {s['rank']}. {s['title']!r}  score={s['score']:.3f}  "
                f"[confidence {why['confidence']:.2f}, skill bonus {why['skill_bonus']:.2f}, "
                f"feedback {why['feedback_signal']:.2f}]  from {','.join(s['sources'])}: "
                f"{','.join(s['knowledge_source_ids'])}"
            )
        print("\nThe transcript was redacted before it left the server; see var/audit.jsonl.")
        desk = (
            f"{base_url}/desk?conversationId={DEMO['conversation_id']}&agentId={DEMO['agent_id']}"
            f"&skills={','.join(DEMO['agent_skills'])}&access_token={token}"
        )
        print(f"\nAgent desk (live feed): {desk}")
        print(f"Supervisor dashboard:   {base_url}/dashboard?access_token={token}")
        print(f"OpenAPI: {base_url}/openapi.json   metrics: {base_url}/metrics\n")
    return 0


def play_live_call(base_url: str, emulator_url: str, token: str) -> None:
    """Start the emulator's scripted billing-dispute call and print cards as the stream finds them.

    The `stream` process follows the call through the Genesys Notifications contract; keyword
    and entity cards (and auto-triggered queries, if configured) land on the conversation feed.
    """
    conversation_id = f"demo-call-{RUN}"
    with httpx.Client(timeout=10) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the stream must have subscribed its queues first
            records = client.get(f"{emulator_url}/emulator/records").json()
            calls = records.get("notifications", {}).get("subscription_calls", [])
            if any(call.get("status") == 200 for call in calls):
                break
            time.sleep(0.5)
        started = client.post(
            f"{emulator_url}/emulator/conversations",
            json={"script": "billing-dispute", "conversation_id": conversation_id, "speed": 2},
        )
        if started.status_code != 201:
            print(f"could not start the scripted call: {started.status_code} {started.text}")
            return
        print(
            f"\nA scripted customer call ({conversation_id}) is playing through the Genesys "
            "Notifications emulator."
        )
        print(
            f"Watch it live: {base_url}/desk?conversationId={conversation_id}&access_token={token}"
        )
        seen: set[str] = set()
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            response = client.get(
                f"{base_url}/v1/conversations/{conversation_id}/suggestions", headers=headers
            )
            if response.status_code == 200:
                for card in response.json()["suggestions"]:
                    if card["id"] not in seen:
                        seen.add(card["id"])
                        print(f"  live card: {card['title']!r}  (sources {card['sources']})")
            time.sleep(0.5)
        if not seen:
            print("  no live cards yet; see the stream process output above")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    env_file = ROOT / ".env"
    if not env_file.exists():
        shutil.copy(ROOT / ".env.example", env_file)
        print("created .env from .env.example")
    missing = missing_settings(env_file)
    if missing:
        print(
            f"note: .env lacks {len(missing)} settings of .env.example ({', '.join(missing[:6])}"
            f"{', ...' if len(missing) > 6 else ''}); their defaults apply. Delete .env to start "
            "from .env.example again."
        )
    settings = load_env(env_file)
    port = settings.get("PORT", "5000")
    base_url = f"http://127.0.0.1:{port}"
    token = settings.get("ASSIST_DESK_TOKENS", "").split(",")[0]
    if args.demo_only:
        return play_demo(base_url, token)

    (ROOT / "var").mkdir(exist_ok=True)
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", "Procfile.dev", "start"], env=env, cwd=ROOT
    )
    try:
        wait_ready(base_url)
        wait_local_kb(base_url)
        play_demo(base_url, token)
        emulator_url = settings.get("ASSIST_GENESYS_API_BASE_URL", "http://127.0.0.1:8790")
        play_live_call(base_url, emulator_url, token)
        print("Everything keeps running; press Ctrl-C to stop.")
        return honcho.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGINT)
            try:
                honcho.wait(timeout=20)
            except subprocess.TimeoutExpired:
                honcho.kill()


if __name__ == "__main__":
    sys.exit(main())
