"""gunicorn configuration: `gunicorn --config python:webapp.gunicorn_conf webapp.wsgi:app`.

gunicorn's own log lines go through our logging setup (JSON in production), and its access
log stays off: the app writes one canonical line per request itself.
"""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from assist.logconfig import configure_logging
from assist.settings import get_settings


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure_logging(get_settings(), force=True)


logger_class = GunicornLogger
accesslog = None
# gevent: every request is a greenlet, so one process holds thousands of open event streams
# (the desk's live feed) without starving short requests, and memory grows by kilobytes per
# feed, not by a thread stack. Redis and HTTP clients are made cooperative by gevent's
# monkey-patching, which gunicorn applies in each worker before the app is loaded.
worker_class = "gevent"
worker_connections = 4000
timeout = 30
# gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), so
# several servers on one machine (tests, benchmarks, other apps) would fight over it; unused here.
control_socket_disable = True
graceful_timeout = 20
