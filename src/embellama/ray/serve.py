"""The `embellama serve` app as a Ray Serve application: replicas behind Ray's proxy.

    serve run embellama.ray.serve:app                      # 1 replica, settings from env
    serve run embellama.ray.serve:build num_replicas=2 threads_per_replica=1 \\
        model_path=/models/bge-small.gguf cache_url=redis://cache:6379/0

Each replica is the same ASGI app `embellama serve` runs (routes, errors, auth, metrics),
with its models loaded at replica start (the app's lifespan) and decoding in the
replica's own process. Settings come from `EMBELLAMA_*` variables and `--config`, as for
`embellama serve`; `build`'s other arguments are `embellama serve` flags without the
dashes (`model_path=...` is `--model-path ...`; `metrics_auth=true` is `--metrics-auth`,
`false` its `--no-` form). Replicas share vectors through Redis
when `cache_url` (or `EMBELLAMA_CACHE_URL`) is set. It listens where Ray Serve's proxy
does (127.0.0.1:8000 unless `http_options` say otherwise), not on embellama's host and
port. `pip install 'embellama[ray]'`.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp

from embellama.cli.options import MODEL_OPTIONS, SERVER_OPTIONS
from embellama.errors import ConfigError

__all__ = ["app", "build", "replica_app", "replica_flags"]

# What `build` takes for the deployment itself; everything else becomes a serve flag.
_DEPLOYMENT_KEYS = ("num_replicas", "threads_per_replica", "min_replicas", "max_replicas")
_SWITCHES = frozenset(o.dest for o in (*SERVER_OPTIONS, *MODEL_OPTIONS) if o.switch)


def replica_app(flags: list[str]) -> ASGIApp:
    """The ASGI app one replica runs, from `embellama serve` flags."""
    from embellama.cli.serve import build_state, configure_logging, parse_serve_args, tracing_from
    from embellama.server.app import create_app

    state, settings = build_state(parse_serve_args(flags))
    configure_logging(settings["log_level"], settings["log_format"])
    return create_app(state, tracing=tracing_from(settings))


def replica_flags(threads: int, options: dict[str, Any]) -> list[str]:
    """`embellama serve` flags for a replica that reserves `threads` CPUs: its workers
    times their threads fit in them (serve's default of 2 workers would put 2 x
    `threads` llama.cpp threads on `threads` CPUs). `workers=N` splits them N ways."""
    workers = int(options.pop("workers", 1))
    if not 1 <= workers <= threads:
        raise ConfigError(
            f"workers={workers} must be between 1 and threads_per_replica={threads}: "
            "each worker needs a CPU of the replica's own"
        )
    flags = ["--workers", str(workers), "--threads-per-worker", str(threads // workers)]
    for key, value in options.items():
        flag = key.replace("_", "-")
        if key in _SWITCHES:  # a switch takes no value: true is --flag, false --no-flag
            flags.append(f"--{flag}" if _switch_value(key, value) else f"--no-{flag}")
        else:
            flags += [f"--{flag}", str(value)]
    return flags


def _switch_value(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"{key}={value!r}: expected true or false")
    return lowered in ("1", "true", "yes", "on")


def build(args: dict[str, Any]) -> Application:
    """A Ray Serve application; `args` as `serve run ... key=value` passes them.

    `num_replicas` (default 1) or `min_replicas`/`max_replicas` (autoscaling on ongoing
    requests); `threads_per_replica` (default 1): llama.cpp threads, and the CPUs each
    replica reserves from Ray; `workers` (default 1): processes they are split among.
    """
    options = dict(args)
    threads = int(options.pop("threads_per_replica", 1))
    scaling: dict[str, Any] = {"num_replicas": int(options.pop("num_replicas", 1))}
    if "min_replicas" in options or "max_replicas" in options:
        scaling = {
            "autoscaling_config": {
                "min_replicas": int(options.pop("min_replicas", 1)),
                "max_replicas": int(options.pop("max_replicas", 4)),
                "target_ongoing_requests": 16,
            }
        }
    flags = replica_flags(threads, options)

    @serve.deployment(ray_actor_options={"num_cpus": threads}, **scaling)
    @serve.ingress(lambda: replica_app(flags))
    class Embellama:
        """One replica: the whole server, in-process decoding."""

    application: Application = Embellama.bind()  # type: ignore[attr-defined]
    return application


app = build({})
