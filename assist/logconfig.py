"""The only logging setup: structlog for our code, stdlib `logging` for everyone else's.

`configure_logging(settings)` is the first call of every entry point (web app factory,
gunicorn, RQ worker, stream). It also configures the process-wide redactor from the settings
(phone regions, extra patterns) before any line is logged or any transcript read. Both
structlog events and foreign records (rq, werkzeug, gunicorn) go through one
`ProcessorFormatter` on the root handler, so every line on stdout has the same shape: JSON in
production, the console renderer on a TTY.

Every event passes through `redact_event`, so card numbers, emails, phone numbers and
credential-named fields never reach the log stream.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from assist.core import redaction
from assist.core.redaction import REDACTED_SECRET, redact_value
from assist.settings import Settings

_configured_with: tuple[str, str, tuple[str, ...]] | None = None


#: Shorter configured values (e.g. an empty-ish test token) would mask ordinary words.
MIN_SECRET_CHARS = 8


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    redacted: EventDict = redact_value(dict(event_dict))
    return redacted


class SecretMasker:
    """Last step of rendering: the configured secrets' values never reach the output.

    `redact_event` drops fields named like credentials; this catches a secret's value wherever
    it ended up (an exception message, a URL, a library's own log line).
    """

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len)[::-1]

    def __call__(self, _logger: WrappedLogger, _method: str, rendered: Any) -> Any:
        if not isinstance(rendered, str) or not self._secrets:
            return rendered
        for secret in self._secrets:
            if secret in rendered:
                rendered = rendered.replace(secret, REDACTED_SECRET)
        return rendered


def _renderer(settings: Settings) -> Processor:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    """Configure redaction, structlog and the root logger once per process.

    Logging is set up again only with `force` or changed settings; the redactor is always set
    from `settings`, so every process redacts with its own configuration.
    """
    global _configured_with
    redaction.configure(
        phone_regions=settings.redaction_phone_regions,
        extra_patterns=settings.redaction_extra_patterns,
    )
    secrets = settings.secret_values()
    key = (settings.log_format, settings.log_level, tuple(sorted(secrets)))
    if _configured_with == key and not force:
        return
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_event,
    ]
    renderer = _renderer(settings)
    exception_processors: list[Processor] = (
        [structlog.processors.dict_tracebacks]
        if isinstance(renderer, structlog.processors.JSONRenderer)
        else []
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=settings.environment != "test",
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exception_processors,
            renderer,
            SecretMasker(secrets),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Libraries that attach their own handlers would print twice; route them to root only.
    for name in (
        "rq.worker",
        "rq.queue",
        "rq.scheduler",
        "gunicorn.error",
        "gunicorn.access",
        "werkzeug",
    ):
        library_logger = logging.getLogger(name)
        library_logger.handlers[:] = []
        library_logger.propagate = True
    _configured_with = key


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **initial)
    return logger
