"""`EmulatorServer`: the emulator as a real HTTP server on loopback, in a background thread.

Used both by `python -m emulator` and by tests, which start one on port 0 and talk to it
over real sockets, so the adapters under test exercise the same HTTP stack as in production.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from emulator.app import create_app
from emulator.config import EmulatorConfig, require_loopback
from emulator.delivery import CallbackDispatcher
from emulator.knowledge import KnowledgeBase, load_articles
from emulator.state import EmulatorState

log = logging.getLogger(__name__)


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler minus its access log: the app logs one line per request itself."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorServer:
    """A running emulator: HTTP server, callback dispatcher and the state they share."""

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        require_loopback(host)
        self.config = config
        self.state = EmulatorState(fault_seed=config.fault_seed)
        self._host = host
        self._port = port
        self._knowledge = KnowledgeBase(load_articles())
        self._dispatcher: CallbackDispatcher | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread; the socket is listening when this returns."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        dispatcher = CallbackDispatcher(self.config, self.state)
        app = create_app(self.state, self.config, dispatcher, self._knowledge)
        # make_server binds and listens before returning, so no readiness polling is needed.
        try:
            server = make_server(
                self._host, self._port, app, threaded=True, request_handler=_QuietRequestHandler
            )
        except BaseException:
            dispatcher.stop()  # releases its HTTP client and thread pool
            raise
        dispatcher.start()
        self._dispatcher = dispatcher
        self._server = server
        # shutdown() waits for the serve loop to notice; a short poll keeps stop() quick.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        log.info("emulator listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving, drop pending callbacks and close every socket. Idempotent."""
        server, thread, dispatcher = self._server, self._thread, self._dispatcher
        self._server = self._thread = self._dispatcher = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
        if dispatcher is not None:
            dispatcher.stop()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
