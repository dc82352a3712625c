"""Configuration of the Genesys Cloud emulator.

The emulator is a local stand-in, so its configuration is deliberately small and forgiving:
anything not set falls back to the value the assist server itself would use (its
`ASSIST_*` variables), and then to demo defaults, so `python -m emulator` works with no
setup at all. Nothing reads the environment at import time: the entry point calls
`EmulatorConfig.from_env(os.environ)` and tests build `EmulatorConfig(...)` directly.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass

from standardwebhooks import Webhook

#: The only address the emulator binds to. It accepts any client credentials it is told to
#: and signs callbacks with a well-known demo secret, so it must never be reachable from
#: another machine.
LOOPBACK_HOST = "127.0.0.1"

DEFAULT_PORT = 8790
#: Port of the notifications WebSocket server (the `connectUri` of created channels).
DEFAULT_WS_PORT = 8791
#: Seconds between `channel.metadata` heartbeats; Genesys Cloud sends one about every 30 s.
DEFAULT_HEARTBEAT_S = 30.0
#: Lifetime of a notification channel; Genesys Cloud channels live 24 hours.
DEFAULT_CHANNEL_TTL_S = 86400.0
DEFAULT_CLIENT_ID = "demo-client"
DEFAULT_CLIENT_SECRET = "demo-secret"
DEFAULT_CALLBACK_SECRET = "whsec_EIvYBSq82SpIf8kOR41fBTNqWxw58aSw"
#: Secret the training-platform receiver (`POST /training/insights`) verifies signatures with.
DEFAULT_TRAINING_SECRET = DEFAULT_CALLBACK_SECRET
DEFAULT_CALLBACK_DELAY_MS = 300
DEFAULT_TOKEN_TTL_S = 86400
DEFAULT_DELIVERY_RETRY_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


class ConfigError(ValueError):
    """A setting has a value the emulator cannot use; the message names the setting."""


def require_loopback(host: str) -> str:
    """Return `host` if it is the loopback address, else raise `ConfigError`."""
    if host != LOOPBACK_HOST:
        hint = ""
        try:
            if ipaddress.ip_address(host).is_loopback:
                hint = " (other loopback addresses are not supported either)"
        except ValueError:
            pass
        raise ConfigError(
            f"refusing to bind the emulator to {host!r}: it only listens on "
            f"{LOOPBACK_HOST}{hint}. It accepts demo credentials and signs callbacks with a "
            "demo secret, so it must not be reachable from other machines."
        )
    return host


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Validated settings for one emulator instance (see the module docstring for sources)."""

    host: str = LOOPBACK_HOST
    port: int = DEFAULT_PORT
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    callback_secret: str = DEFAULT_CALLBACK_SECRET
    #: Standard Webhooks secret of the training-platform receiver (`EMULATOR_TRAINING_SECRET`).
    training_secret: str = DEFAULT_TRAINING_SECRET
    callback_delay_ms: int = DEFAULT_CALLBACK_DELAY_MS
    token_ttl_s: int = DEFAULT_TOKEN_TTL_S
    delivery_retry_s: tuple[float, ...] = DEFAULT_DELIVERY_RETRY_S
    #: Timeout of one callback delivery attempt.
    delivery_timeout_s: float = 10.0
    #: Seed of the random generator behind the `*_ratio` faults, for reproducible runs.
    fault_seed: int = 0
    #: Port of the notifications WebSocket server when run by `python -m emulator` (like
    #: `port`, `EmulatorServer` itself takes the port to bind as an argument).
    ws_port: int = DEFAULT_WS_PORT
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    channel_ttl_s: float = DEFAULT_CHANNEL_TTL_S

    def __post_init__(self) -> None:
        require_loopback(self.host)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"EMULATOR_PORT must be 0..65535, got {self.port}")
        if not 0 <= self.ws_port <= 65535:
            raise ConfigError(f"EMULATOR_WS_PORT must be 0..65535, got {self.ws_port}")
        if not (math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0):
            raise ConfigError("EMULATOR_HEARTBEAT_S must be a number of seconds > 0")
        if not (math.isfinite(self.channel_ttl_s) and self.channel_ttl_s > 0):
            raise ConfigError("EMULATOR_CHANNEL_TTL_S must be a number of seconds > 0")
        if not self.client_id or not self.client_secret:
            raise ConfigError("the OAuth client id and secret must not be empty")
        try:
            # Fail at start-up rather than on the first callback.
            Webhook(self.callback_secret)
        except Exception as exc:
            raise ConfigError(
                "EMULATOR_CALLBACK_SECRET must be a Standard Webhooks secret "
                f"('whsec_' followed by base64): {exc}"
            ) from exc
        try:
            Webhook(self.training_secret)
        except Exception as exc:
            raise ConfigError(
                "EMULATOR_TRAINING_SECRET must be a Standard Webhooks secret "
                f"('whsec_' followed by base64): {exc}"
            ) from exc
        if self.callback_delay_ms < 0:
            raise ConfigError("EMULATOR_CALLBACK_DELAY_MS must be >= 0")
        if self.token_ttl_s < 1:
            raise ConfigError("EMULATOR_TOKEN_TTL_S must be >= 1")
        if not all(math.isfinite(wait) and wait >= 0 for wait in self.delivery_retry_s):
            raise ConfigError("EMULATOR_DELIVERY_RETRY_S must be finite waits >= 0")
        if self.delivery_timeout_s <= 0:
            raise ConfigError("the delivery timeout must be > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EmulatorConfig:
        """Build the configuration from environment variables (empty values count as unset)."""

        def get(*names: str) -> str | None:
            for name in names:
                value = env.get(name, "").strip()
                if value:
                    return value
            return None

        callback_secret = get("EMULATOR_CALLBACK_SECRET")
        if callback_secret is None:
            # The assist server accepts several secrets (for rotation); sign with the first.
            first = (env.get("ASSIST_CALLBACK_SECRETS") or "").split(",")[0].strip()
            callback_secret = first or DEFAULT_CALLBACK_SECRET

        retry = get("EMULATOR_DELIVERY_RETRY_S")
        return cls(
            host=get("EMULATOR_HOST") or LOOPBACK_HOST,
            port=_int(get("EMULATOR_PORT"), "EMULATOR_PORT", DEFAULT_PORT),
            client_id=get("EMULATOR_CLIENT_ID", "ASSIST_GENESYS_CLIENT_ID") or DEFAULT_CLIENT_ID,
            client_secret=get("EMULATOR_CLIENT_SECRET", "ASSIST_GENESYS_CLIENT_SECRET")
            or DEFAULT_CLIENT_SECRET,
            callback_secret=callback_secret,
            training_secret=get("EMULATOR_TRAINING_SECRET") or DEFAULT_TRAINING_SECRET,
            callback_delay_ms=_int(
                get("EMULATOR_CALLBACK_DELAY_MS"),
                "EMULATOR_CALLBACK_DELAY_MS",
                DEFAULT_CALLBACK_DELAY_MS,
            ),
            token_ttl_s=_int(
                get("EMULATOR_TOKEN_TTL_S"), "EMULATOR_TOKEN_TTL_S", DEFAULT_TOKEN_TTL_S
            ),
            delivery_retry_s=(
                parse_retry_schedule(retry, "EMULATOR_DELIVERY_RETRY_S")
                if retry is not None
                else DEFAULT_DELIVERY_RETRY_S
            ),
            ws_port=_int(get("EMULATOR_WS_PORT"), "EMULATOR_WS_PORT", DEFAULT_WS_PORT),
            heartbeat_s=_float(
                get("EMULATOR_HEARTBEAT_S"), "EMULATOR_HEARTBEAT_S", DEFAULT_HEARTBEAT_S
            ),
            channel_ttl_s=_float(
                get("EMULATOR_CHANNEL_TTL_S"), "EMULATOR_CHANNEL_TTL_S", DEFAULT_CHANNEL_TTL_S
            ),
        )


def parse_retry_schedule(value: str, name: str) -> tuple[float, ...]:
    """Parse a comma-separated list of waits in seconds, e.g. "0.5,1,2"."""
    try:
        return tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"{name} must be comma-separated seconds such as '0.5,1,2', got {value!r}"
        ) from None


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _float(value: str | None, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
