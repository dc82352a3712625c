"""Flask delivery layer: the app factory, thin blueprints and the one error shape."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from assist.bootstrap import Services, build_services
from assist.logconfig import configure_logging
from assist.settings import Settings, get_settings
from webapp import context, pages, throttle
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
    hops = settings.trusted_proxy_hops
    if hops:
        # Only then is X-Forwarded-For believed: it decides the address a client is rate
        # limited under, and anyone who reaches the process directly could forge it.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    built = services or build_services(settings)
    app.extensions[EXTENSION_KEY] = built
    throttle.init_app(app, settings, built.redis)
    context.init_app(app)
    register_error_handlers(app)
    for module in (suggestions, events, feedback, callbacks, analytics, health, pages):
        app.register_blueprint(module.bp)
    return app
