"""schemathesis over every operation of the served `/openapi.json`, against the real system.

Each operation is driven through schemathesis' coverage phase (boundary and invalid values of
every parameter and body field, missing required parts, unexpected methods) and its fuzzing
phase, in positive and negative modes, with a fixed seed and deterministic generation, so a
CI run is reproducible. Every response must:

- not be a 5xx (`not_a_server_error`);
- have a documented status code, content type and (JSON) body schema, and the documented
  response headers (`status_code_conformance`, `content_type_conformance`,
  `response_schema_conformance`, `response_headers_conformance`);
- not be a 2xx without the desk token (`ignored_auth`: a 2xx is re-sent without and with a
  wrong token, which must be refused).

The desk token is sent with every case, so the fuzzed inputs get past authentication. The
callback endpoint is fuzzed twice: unsigned (every POST within the size limit must be a 401)
and correctly signed (Standard Webhooks over the exact bytes sent), so the JSON and field
validation behind the signature is fuzzed too. The live feed (`text/event-stream`) is read up
to its first event, then closed.

schemathesis' pytest plugin does not run under pytest 9 ('Function' object has no attribute
'_nodeid'), so each operation's test is built with the same builder the plugin uses.
Failures are collected (not shrunk) so one run lists every distinct one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.conftest import report, sign
from tests.processes import DESK_TOKEN, ProcessSystem
from webapp.openapi import build_openapi

pytestmark = pytest.mark.e2e

SEED = 20261121
MAX_EXAMPLES = 40
REQUEST_TIMEOUT_S = 10
AUTH = {"Authorization": f"Bearer {DESK_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
CALLBACK_PATH = "/v1/callbacks/genesys"
EVENTS_PATH = "/v1/conversations/{conversation_id}/events"
MAX_BODY_BYTES = 64 * 1024  # the system runs with the default ASSIST_MAX_BODY_BYTES

#: Every operation of the document, as collected (the served one is checked to be the same).
OPERATIONS = [
    (method.upper(), path) for path, item in build_openapi()["paths"].items() for method in item
]


@dataclass
class Tally:
    cases: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)


TOTAL = Tally()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(TOTAL.statuses.items()))
    report(
        f"FUZZ openapi: {TOTAL.cases} cases over {len(OPERATIONS)} operations, "
        f"{TOTAL.server_errors} 5xx, {len(TOTAL.failures)} spec failures ({statuses})"
    )


@pytest.fixture(scope="module")
def schema(system: ProcessSystem) -> Any:
    served = requests.get(f"{system.web_url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert served.status_code == 200
    assert served.json() == build_openapi(), "the served document is not the generated one"
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{system.web_url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


@pytest.fixture(scope="module")
def known(system: ProcessSystem) -> dict[str, str]:
    """A completed request, so the read operations are also seen answering 200."""
    accepted = system.trigger(
        conversation_id="fuzz-known-1",
        transcript="I was charged twice on my bill and want a refund",
        knowledge_source_ids=["kb-billing"],
    )
    assert accepted.status_code == 202, accepted.text
    view = system.wait_terminal(accepted.json()["request_id"])
    assert view["status"] == "completed", view
    return {"request_id": view["request_id"], "conversation_id": "fuzz-known-1"}


def run_operation(
    schema: Any,
    method: str,
    path: str,
    send: Callable[[Any], requests.Response],
    expect: Callable[[Any, Any], str | None] | None = None,
    extra_cases: tuple[Any, ...] = (),
) -> Tally:
    """Every case schemathesis builds for the operation (plus `extra_cases`): sent with `send`,
    validated against the document; `expect` may add a rule of its own (a message when broken)."""
    operation = schema[path][method]
    tally = Tally()

    def check(case: Any) -> None:
        response = send(case)
        tally.cases += 1
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        problems = []
        broken = expect(case, response) if expect else None
        if broken:
            problems.append(broken)
        try:
            case.validate_response(response, checks=CHECKS, headers=AUTH)
        except (Failure, FailureGroup) as exc:
            problems.append(str(exc))
        for problem in problems:
            key = f"{problem.splitlines()[0]} [{response.status_code}]"
            tally.failures.setdefault(key, problem)

    test = build_operation_test(
        config=schema.config,
        operation=operation,
        test_func=check,
        given_kwargs={},
        feedback=FeedbackSources(),
    )
    test()
    for case in extra_cases:
        check(case)
    TOTAL.cases += tally.cases
    TOTAL.server_errors += tally.server_errors
    TOTAL.statuses.update(tally.statuses)
    TOTAL.failures.update({f"{method} {path}: {k}": v for k, v in tally.failures.items()})
    return tally


def assert_clean(tally: Tally, label: str) -> None:
    assert tally.cases > 0, f"{label}: no case was generated"
    details = "\n\n".join(f"{key}\n{text[:2000]}" for key, text in tally.failures.items())
    assert tally.server_errors == 0 and not tally.failures, (
        f"{label}: {tally.cases} cases, {tally.server_errors} 5xx, "
        f"{len(tally.failures)} distinct failures:\n\n{details}"
    )


def _plain_sender(system: ProcessSystem, session: requests.Session) -> Callable[[Any], Any]:
    def send(case: Any) -> Any:
        return case.call(
            base_url=system.web_url, session=session, headers=AUTH, timeout=REQUEST_TIMEOUT_S
        )

    return send


def _feed_sender(system: ProcessSystem, session: requests.Session) -> Callable[[Any], Any]:
    """Read a live feed up to its first event (the stream itself runs for minutes)."""

    def send(case: Any) -> requests.Response:
        kwargs = case.as_transport_kwargs(base_url=system.web_url, headers=AUTH)
        response = session.request(**kwargs, stream=True, timeout=REQUEST_TIMEOUT_S)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            first = b""
            for chunk in response.iter_content(256):
                first += chunk
                if b"\n\n" in first:
                    break
            response.close()
            response._content = first  # what validation reads; the rest is never sent
        else:
            _ = response.content
        return response

    return send


def _callback_body(kwargs: dict[str, Any]) -> bytes:
    if "json" in kwargs:
        return json.dumps(kwargs.pop("json")).encode()
    data = kwargs.pop("data", b"")
    return data.encode() if isinstance(data, str) else bytes(data or b"")


def _signed_sender(system: ProcessSystem, session: requests.Session) -> Callable[[Any], Any]:
    """Send the generated callback with a valid signature over the exact bytes sent."""

    def send(case: Any) -> requests.Response:
        kwargs = case.as_transport_kwargs(base_url=system.web_url)
        raw = _callback_body(kwargs)
        msg_id = f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        headers = {
            k: v for k, v in kwargs.pop("headers").items() if not k.lower().startswith("webhook-")
        }
        headers.update(
            {
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(raw, msg_id, timestamp),
            }
        )
        return session.request(**kwargs, data=raw, headers=headers, timeout=REQUEST_TIMEOUT_S)

    return send


def _anything_documented(case: Any, response: Any) -> str | None:
    return None


def _unsigned_is_401(case: Any, response: requests.Response) -> str | None:
    """An unsigned (or wrongly signed) callback is refused before anything reads it."""
    if case.method.upper() != "POST" or response.status_code in (401, 413):
        return None
    sent = response.request.body or b""
    if len(sent) > MAX_BODY_BYTES:
        return None
    return f"unsigned callback answered {response.status_code}, not 401: {response.text[:300]}"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_the_document(
    schema: Any,
    system: ProcessSystem,
    session: requests.Session,
    known: dict[str, str],
    method: str,
    path: str,
) -> None:
    operation = schema[path][method]
    extra: tuple[Any, ...] = ()
    expect = _anything_documented
    send = _plain_sender(system, session)
    if path == EVENTS_PATH:
        send = _feed_sender(system, session)
    elif path == CALLBACK_PATH:
        expect = _unsigned_is_401
    elif path == "/v1/suggestions/{request_id}":
        extra = (operation.Case(path_parameters={"request_id": known["request_id"]}),)
    elif path == "/v1/conversations/{conversation_id}/suggestions":
        extra = (operation.Case(path_parameters={"conversation_id": known["conversation_id"]}),)
    tally = run_operation(schema, method, path, send, expect, extra)
    if extra:
        assert tally.statuses[200] >= 1, "the known request was not read back"
    assert_clean(tally, f"{method} {path}")


def test_signed_callbacks_conform_to_the_document(
    schema: Any, system: ProcessSystem, session: requests.Session
) -> None:
    tally = run_operation(schema, "POST", CALLBACK_PATH, _signed_sender(system, session))
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
    report(f"FUZZ openapi signed callbacks: {tally.cases} cases ({statuses})")
    # Signed, the bodies get past the signature: to the JSON, field and lookup checks.
    assert set(tally.statuses) - {401, 405, 413} != set(), tally.statuses
    assert_clean(tally, f"POST {CALLBACK_PATH} (signed)")


def test_the_system_is_still_healthy(system: ProcessSystem) -> None:
    for name, process in system.processes.items():
        assert process.poll() is None, f"{name} exited: {system.log_tail(name)}"
    assert requests.get(f"{system.web_url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{system.web_url}/readyz", timeout=5).status_code == 200
