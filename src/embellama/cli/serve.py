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
from typing import TYPE_CHECKING, Any

from embellama.cli.options import (
    MODEL_OPTIONS,
    SERVER_OPTIONS,
    add_options,
    cache_from,
)
from embellama.cli.plan import (
    ServePlan,
    config_path_from,
    load_plan,
    masked_settings,
    model_spec_from_fields,
)
from embellama.config import ModelSpec
from embellama.default_model import embellama_home
from embellama.errors import ConfigError
from embellama.model.gguf import read_gguf_info
from embellama.model.loaded import LoadedModel
from embellama.model.memory import fit_context

if TYPE_CHECKING:
    from embellama.server.state import ServerState
    from embellama.server.tracing import Tracing

_log = logging.getLogger("embellama.server")


def register(commands: Any) -> None:
    parser = commands.add_parser("serve", help="Serve the OpenAI embeddings API on a GGUF model.")
    add_options(parser, SERVER_OPTIONS, "server")
    add_options(parser, MODEL_OPTIONS, "model")
    parser.set_defaults(handler=run)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access-log fields ride in `extra`."""

    # uvicorn's records carry `color_message`, the message again with ANSI escapes.
    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "color_message",
    }

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

    state, server = build_state(args)
    config = uvicorn.Config(
        create_app(state, tracing=tracing_from(server)),
        host=server["host"],
        port=server["port"],
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=None,
        lifespan="on",
    )
    _DrainingServer(config).run()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_state(args: argparse.Namespace) -> tuple[ServerState, dict[str, Any]]:
    """The server's state (models not yet started) and its settings, from flags,
    `EMBELLAMA_*` variables and the config file: what `embellama serve` and a Ray Serve
    replica (embellama.ray.serve) both run."""
    from embellama.server.audit import AuditLog
    from embellama.server.security import AccessControl
    from embellama.server.state import Deployment, ServerState

    config_path = config_path_from(args)

    def deployment(plan: ServePlan) -> Deployment:
        access = AccessControl(
            plan.keys,
            plan.rate_limits,
            key_limits=plan.key_rate_limits,
            admin_keys=plan.admin_keys,
            public_metrics=not plan.server["metrics_auth"],
            signing=plan.signing,
        )

        def model_from_fields(name: str, fields: object) -> ModelSpec:
            return model_spec_from_fields(name, fields, plan.server)

        return Deployment(
            models=plan.models,
            limits=plan.limits,
            access=access,
            settings=masked_settings(plan),
            models_dir=plan.server["models_dir"] or embellama_home() / "models",
            model_from_fields=model_from_fields,
            cache=lambda: cache_from(plan.server),
            restart_only=frozenset(o.dest for o in SERVER_OPTIONS if o.restart),
        )

    plan = load_plan(args, config_path)
    server = plan.server
    configure_logging(server["log_level"], server["log_format"])
    if not plan.keys and not _is_loopback(server["host"]):
        _log.warning(
            "listening on %s, reachable beyond this machine, without any API key "
            "(set --api-key or EMBELLAMA_API_KEY)",
            server["host"],
        )
    first = deployment(plan)
    for spec in first.models:  # a bad file fails here, in one line, before binding
        model, limits = spec.config, spec.limits
        LoadedModel(model, inference=False).close()
        fit_context(
            model, read_gguf_info(model.path), limits.workers, limits.memory_limit, quiet=True
        )
    audit = AuditLog.open(
        server["audit_log"], server["audit_log_max_bytes"], server["audit_log_backups"]
    )
    state = ServerState(
        deployment=first,
        source=(lambda: deployment(load_plan(args, config_path))) if config_path else None,
        audit=audit,
    )
    return state, server


def tracing_from(server: dict[str, Any]) -> Tracing | None:
    """The server's tracer when --otlp-endpoint is set; None (nothing imported, no
    middleware) when it is not."""
    endpoint = server["otlp_endpoint"]
    if endpoint is None:
        return None
    try:
        from embellama.server.tracing import Tracing
    except ImportError as exc:
        raise ConfigError(
            f"--otlp-endpoint needs OpenTelemetry ({exc.name} is missing): "
            "pip install 'embellama[otel]'"
        ) from None
    _log.info("tracing: spans go to %s", endpoint)
    return Tracing(endpoint, server["otlp_service_name"])


def parse_serve_args(argv: list[str]) -> argparse.Namespace:
    """`embellama serve` flags parsed as the command line would (environment included)."""
    parser = argparse.ArgumentParser(prog="embellama")
    register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])
