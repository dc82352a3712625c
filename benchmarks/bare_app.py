"""The baseline: a bare Flask endpoint, served exactly like the real one.

`gunicorn --config python:webapp.gunicorn_conf --workers N benchmarks.bare_app:app` runs it
with the project's own gunicorn configuration (its worker class, the project's logger
class) and the same worker count as the system under test. The endpoint does the least a
callback receiver can do, read the body and answer `202 {"status": "queued"}`, so the
difference from `POST /v1/callbacks/genesys` is everything the application adds: signature
verification, parsing, the Redis transaction, the audit line, the analytics record, the
request log line.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/v1/callbacks/genesys")
def callback() -> tuple[Response, int]:
    request.get_data()
    return jsonify({"status": "queued"}), 202


@app.get("/readyz")
def readyz() -> tuple[Response, int]:
    """What the cold-start baseline waits for (benchmarks/coldstart.py), like the real one."""
    return jsonify({"status": "ok"}), 200
