"""Run the Genesys Cloud emulator: `python -m emulator [--host H] [--port N] [--ws-port N]`.

Settings come from `EMULATOR_*` variables (see `emulator.config`); the flags override host
and ports. Two servers start: HTTP (`--port`, default 8790) and the notifications WebSocket
(`--ws-port`, default 8791); both URLs are logged. `--port 0` without `--ws-port` or
`EMULATOR_WS_PORT` puts the WebSocket on a free port too, so a throw-away instance never
collides with a running one. It serves until SIGINT or SIGTERM, then shuts down cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from types import FrameType

from emulator.config import ConfigError, EmulatorConfig
from emulator.server import EmulatorServer

log = logging.getLogger("emulator")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Genesys Cloud stand-in for genesys-assist (loopback only).",
    )
    parser.add_argument("--host", help="address to bind (only 127.0.0.1; default EMULATOR_HOST)")
    parser.add_argument(
        "--port", type=int, help="port to bind, 0 for any free one (default EMULATOR_PORT or 8790)"
    )
    parser.add_argument(
        "--ws-port",
        type=int,
        help="notifications WebSocket port, 0 for any free one (default EMULATOR_WS_PORT or "
        "8791; 0 when --port is 0 and neither is given)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every callback POST at INFO; the dispatcher already logs one line per attempt.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = EmulatorConfig.from_env(os.environ)
        # replace() re-runs the validation, the loopback check included.
        ws_port = config.ws_port
        if args.ws_port is not None:
            ws_port = args.ws_port
        elif args.port == 0 and not os.environ.get("EMULATOR_WS_PORT", "").strip():
            ws_port = 0
        config = replace(
            config,
            host=args.host if args.host is not None else config.host,
            port=args.port if args.port is not None else config.port,
            ws_port=ws_port,
        )
    except ConfigError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    server = EmulatorServer(config, host=config.host, port=config.port, ws_port=config.ws_port)
    try:
        server.start()
    except OSError as exc:
        print(
            f"emulator: cannot listen on {config.host}:{config.port} "
            f"(WebSocket {config.ws_port}): {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        stop.wait()
    finally:
        server.stop()
    log.info("emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
