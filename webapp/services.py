"""Access to the process's `Services` from request handlers (kept in `app.extensions`)."""

from __future__ import annotations

from flask import current_app

from assist.bootstrap import Services

EXTENSION_KEY = "assist"


def services() -> Services:
    built: Services = current_app.extensions[EXTENSION_KEY]
    return built
