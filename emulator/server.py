"""`EmulatorServer`: the emulator as real servers on loopback, in background threads.

Two listening ports: the HTTP server (REST, OAuth, control routes) and the notifications
WebSocket server (the `connectUri` of channels, see `emulator.sockets`). Used both by
`python -m emulator` and by tests, which start one on port 0 / ws port 0 and talk to it over
real sockets, so the adapters under test exercise the same stacks as in production.
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
from emulator.sockets import NotificationServer
from emulator.state import EmulatorState

log = logging.getLogger(__name__)


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler minus its access log: the app logs one line per request itself."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorServer:
    """A running emulator: HTTP server, WebSocket server, callback dispatcher, shared state.

    `port` and `ws_port` are the ports to bind (0: any free one); `config.port` and
    `config.ws_port` are only what `python -m emulator` passes here.
    """

    def __init__(
        self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0, ws_port: int = 0
    ) -> None:
        require_loopback(host)
        self.config = config
        self.state = EmulatorState(fault_seed=config.fault_seed)
        self._host = host
        self._port = port
        self._ws_port = ws_port
        self._notifications: NotificationServer | None = None
        self._knowledge = KnowledgeBase(load_articles())
        self._dispatcher: CallbackDispatcher | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self._host}:{self._server.server_port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>`, the base of every channel's `connectUri`."""
        if self._notifications is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._notifications.url

    def start(self) -> None:
        """Bind and serve in daemon threads; both ports are listening when this returns."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        notifications = NotificationServer(self.config, self.state, self._host, self._ws_port)
        notifications.start()
        dispatcher = CallbackDispatcher(self.config, self.state)
        app = create_app(self.state, self.config, dispatcher, self._knowledge, notifications)
        # make_server binds and listens before returning, so no readiness polling is needed.
        try:
            server = make_server(
                self._host, self._port, app, threaded=True, request_handler=_QuietRequestHandler
            )
        except BaseException:
            dispatcher.stop()  # releases its HTTP client and thread pool
            notifications.stop()
            raise
        self._notifications = notifications
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
        log.info("emulator notifications WebSocket on %s", notifications.url)

    def stop(self) -> None:
        """Stop serving, drop pending callbacks and close every socket. Idempotent."""
        server, thread, dispatcher = self._server, self._thread, self._dispatcher
        notifications = self._notifications
        self._server = self._thread = self._dispatcher = None
        self._notifications = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
        if notifications is not None:
            notifications.stop()
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
