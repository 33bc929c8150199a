"""`embellama serve`: the OpenAI-compatible embeddings server.

With no arguments it serves the built-in default model on 127.0.0.1:8080.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
import time
from typing import Any

from embellama.cli.options import (
    MODEL_OPTIONS,
    SERVER_OPTIONS,
    add_options,
    model_config_from,
    resolve,
)
from embellama.errors import ConfigError

_log = logging.getLogger("embellama.server")


def register(commands: Any) -> None:
    parser = commands.add_parser("serve", help="Serve the OpenAI embeddings API on a GGUF model.")
    add_options(parser, SERVER_OPTIONS, "server")
    add_options(parser, MODEL_OPTIONS, "model")
    parser.set_defaults(handler=run)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access-log fields ride in `extra`."""

    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run(args: argparse.Namespace) -> int:
    import uvicorn

    class _DrainingServer(uvicorn.Server):
        """Exits 0 after a graceful drain on SIGTERM/SIGINT (uvicorn would re-raise the
        signal after shutting down, so supervisors would see a death by signal)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    from embellama.server.app import create_app
    from embellama.server.security import AccessControl, RateLimits
    from embellama.server.state import ServerLimits, ServerState
    from embellama.service import ModelService, ServiceLimits

    server = resolve(args, SERVER_OPTIONS)
    model = model_config_from(resolve(args, MODEL_OPTIONS))
    configure_logging(server["log_level"], server["log_format"])
    keys = _api_keys(server)
    if not keys and not _is_loopback(server["host"]):
        _log.warning(
            "listening on %s, reachable beyond this machine, without any API key "
            "(set --api-key or EMBELLAMA_API_KEY)",
            server["host"],
        )
    limits = ServiceLimits(
        workers=server["workers"],
        max_queued_requests=server["queue_size"],
        request_timeout=server["request_timeout"],
    )
    state = ServerState(
        services=[ModelService(model, limits)],
        limits=ServerLimits(server["max_inputs_per_request"], server["max_body_bytes"]),
        access=AccessControl(
            keys,
            RateLimits(server["rate_limit_rps"], server["rate_limit_tpm"]),
            public_metrics=not server["metrics_auth"],
        ),
    )
    config = uvicorn.Config(
        create_app(state),
        host=server["host"],
        port=server["port"],
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=None,
        lifespan="on",
    )
    _DrainingServer(config).run()
    return 0


def _api_keys(server: dict[str, Any]) -> list[str]:
    keys = list(server["api_key"] or [])
    if server["api_key_file"] is not None:
        try:
            lines = server["api_key_file"].read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file: {exc}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return keys


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
