"""Flask delivery layer: the app factory, thin blueprints and the one error shape."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from assist.bootstrap import Services, build_services
from assist.logconfig import configure_logging
from assist.settings import Settings, get_settings
from webapp import context, pages
from webapp.api import analytics, callbacks, events, feedback, health, suggestions
from webapp.errors import register_error_handlers
from webapp.services import EXTENSION_KEY


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the web app. Entry points pass nothing; tests pass settings (and maybe services)."""
    settings = settings or get_settings()
    configure_logging(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # One proxy hop (the platform router) may set X-Forwarded-*.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = services or build_services(settings)
    context.init_app(app)
    register_error_handlers(app)
    for module in (suggestions, events, feedback, callbacks, analytics, health, pages):
        app.register_blueprint(module.bp)
    return app
