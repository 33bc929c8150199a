"""Every command-line knob, defined once: flag, `EMBELLAMA_*` variable, type, help.

An environment variable sets the default; a flag overrides it. A bad value in either
fails at start with one line naming the flag or the variable; a secret's value is never
repeated in that line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embellama.cache import EmbeddingCache, parse_size
from embellama.config import (
    DEFAULT_MAX_BATCH_SEQUENCES,
    DEFAULT_MAX_BATCH_TOKENS,
    BatchingConfig,
    ModelConfig,
    ModelKind,
    Normalization,
    Pooling,
)
from embellama.default_model import DEFAULT_MODEL_NAME, require_default_model
from embellama.errors import ConfigError
from embellama.server.security import key_problem

__all__ = [
    "CACHE_OPTIONS",
    "MODEL_OPTIONS",
    "SERVER_OPTIONS",
    "SERVING_MAX_BATCH_TOKENS",
    "Option",
    "add_options",
    "cache_from",
    "default_workers",
    "model_config_from",
]

# The serving budget with several workers: on 2 cores, 16 one-text clients fill ~4.7
# inputs (~127 tokens) per decode, so a 128-token batch counts as full and the next one
# waits in the worker's pipe; 256 left every worker idle between batches (bench/notes.md).
SERVING_MAX_BATCH_TOKENS = 128


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str
    choices: Sequence[str] | None = None
    multiple: bool = False
    # A flag without a value (`--allow-unverified-architecture`); true/false elsewhere.
    switch: bool = False
    # A key: its value never appears in an error, and an empty entry is refused, not skipped.
    secret: bool = False
    # Read once at start (the socket, the cache, logging): a reload reports a new value
    # as needing a restart instead of showing it as in force.
    restart: bool = False

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")

    @property
    def env(self) -> str:
        return "EMBELLAMA_" + self.dest.upper()

    @property
    def file_key(self) -> str:
        """The key in the TOML config file: `[server]` keys, or a `[[models]]` entry's."""
        key = self.dest.removeprefix("model_")
        return "aliases" if key == "alias" else key


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _key(text: str) -> str:
    """An API or admin key; an empty one would let a request without a key in."""
    problem = key_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"a key {problem}")
    return text


def _ttl_seconds(text: str) -> float:
    value = _positive_float(text)
    if value < 1:  # below a second Redis's EX would be 0, and every SET would fail
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {value}")
    return value


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


MODEL_OPTIONS = (
    Option(
        "model-path",
        f"GGUF file to serve (default: the built-in {DEFAULT_MODEL_NAME}).",
        parse=Path,
    ),
    Option(
        "model-name",
        "Name clients pass as `model` (default: the file name; "
        f"{DEFAULT_MODEL_NAME} for the built-in model).",
    ),
    Option("model-alias", "Another name the model answers to; repeat for several.", multiple=True),
    Option(
        "model-kind",
        "What the file must be: 'embedding' or 'rerank' (a cross-encoder). Default: "
        "whatever it is; a mismatch fails the load.",
        choices=[k.value for k in ModelKind],
    ),
    Option(
        "allow-unverified-architecture",
        "Serve an architecture that no test here compares with its reference "
        "implementation (README: Verified architectures); logs a warning.",
        default=False,
        parse=_boolean,
        switch=True,
    ),
    Option(
        "pooling",
        "Override the GGUF header's pooling (default: the header's; decoders "
        "without one use the last token).",
        choices=[p.value for p in Pooling if p is not Pooling.RANK],
    ),
    Option(
        "normalization",
        "How vectors are scaled; l2 is what cosine search expects.",
        default="l2",
        choices=[n.value for n in Normalization],
    ),
    Option("norm-p", "p for --normalization p_norm.", default=2.0, parse=_positive_float),
    Option(
        "threads-per-worker",
        "llama.cpp threads in each worker (default: all cores / workers). Keep workers x "
        "threads at or below the cores: ggml's threads wait on each other at every step, so "
        "one preempted thread stalls the whole decode (bench/results.md).",
        parse=_positive_int,
    ),
    Option(
        "n-ctx",
        "Most tokens per input (default and upper bound: the model's context).",
        parse=_positive_int,
    ),
    Option(
        "n-gpu-layers",
        "Layers to offload to a GPU build of llama.cpp (-1 = all).",
        default=0,
        parse=int,
    ),
    Option(
        "query-prefix",
        'Text put in front of inputs sent with input_type "query" (e5: "query: "). '
        "Default: the built-in table's prefix for this model's family, if any.",
    ),
    Option(
        "document-prefix",
        'Text put in front of inputs sent with input_type "document" (e5: "passage: ").',
    ),
    Option(
        "instruction-template",
        'For instruction-following models: "Instruct: {instruction}\\nQuery:"; a request\'s '
        "`instruction` fills it in front of queries.",
    ),
    Option(
        "add-eos",
        "Append the vocabulary's EOS to every text: last-token embedders (Qwen3-Embedding) "
        "are trained with it. Default: as the GGUF's add-EOS flag says. Token-id inputs "
        "never get one.",
        parse=_boolean,
    ),
    Option(
        "cache-version",
        "Name this model's cached vectors (memory and Redis) by this label instead of the "
        "file's content fingerprint: replicas with the same label and pooling share "
        "entries whatever their files. Change it whenever the vectors change. Default: "
        "the fingerprint, so only the same file shares entries.",
    ),
    Option(
        "max-batch-tokens",
        "Token budget of one llama.cpp decode. On CPU bigger is not "
        "faster: attention cost grows with the whole batch, and 256 measured best "
        f"(bench/batch_budget.md). Default {DEFAULT_MAX_BATCH_TOKENS}; "
        f"{SERVING_MAX_BATCH_TOKENS} for a server with several workers, where a full "
        "batch of short requests is then queued in a busy worker's pipe and short queries "
        "wait less behind bulk work (16 clients: 1.06x; bench/notes.md).",
        parse=_positive_int,
    ),
    Option(
        "max-batch-sequences",
        f"Most inputs in one decode (llama.cpp allows 256). Default {DEFAULT_MAX_BATCH_SEQUENCES}.",
        default=DEFAULT_MAX_BATCH_SEQUENCES,
        parse=_positive_int,
    ),
)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_size(text: str) -> int:
    value = _size(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 bytes, got {text!r}")
    return value


def _log_level(text: str) -> str:
    level = text.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise argparse.ArgumentTypeError(f"choose debug, info, warning or error, got {text!r}")
    return level


CACHE_OPTIONS = (
    Option(
        "cache-size",
        "Memory for the embedding cache (LRU, counted in bytes of keys, vectors and "
        "overhead), e.g. 256MB or 1GiB; 0 turns it off. A hit costs a dict lookup instead "
        "of a decode; repeated queries and re-ingested documents are common. Default 256MB.",
        default="256MB",
        parse=_size,
        restart=True,
    ),
    Option(
        "cache-url",
        "redis://host:port/db: a second cache tier shared by replicas (memory stays in "
        "front). If Redis is down or slow the server computes instead; clients see no error.",
        restart=True,
    ),
    Option(
        "cache-ttl",
        "Seconds a vector lives in Redis, at least 1. Default 604800 (7 days).",
        default=604800.0,
        parse=_ttl_seconds,
    ),
    Option(
        "cache-read-timeout",
        "Seconds a Redis lookup may take before it counts as a miss, for a small one; "
        "each MiB of vectors it fetches adds 50 ms (a 2,048 x 1,024-dim MGET is 8 MiB). "
        "Short, because a miss only costs a decode. Default 0.02.",
        default=0.02,
        parse=_positive_float,
    ),
    Option(
        "cache-write-timeout",
        "Seconds a Redis write-behind may take, plus 50 ms per MiB; it never delays a "
        "response. Default 0.1.",
        default=0.1,
        parse=_positive_float,
        restart=True,
    ),
    Option(
        "cache-namespace",
        "Prefix of this deployment's Redis keys, so several can share one Redis.",
        default="embellama",
        restart=True,
    ),
)

SERVER_OPTIONS = (
    Option(
        "config",
        "TOML file with [server] settings, [[models]] and [[keys]]; flags and "
        "EMBELLAMA_* variables override it. Reloaded on SIGHUP and POST /admin/reload.",
        parse=Path,
    ),
    Option("host", "Address to listen on; loopback by default.", default="127.0.0.1", restart=True),
    Option("port", "TCP port.", default=8080, parse=_integer, restart=True),
    Option(
        "workers",
        "Worker processes, each with its own llama.cpp context (weights are memory-mapped, "
        "so shared); a crash in one never takes the server down. Default: 2 on a CPU with "
        "2 or more cores, each with half the threads, and a batch that is all the work "
        "there is borrows the idle worker's threads (at 16 clients on 2 cores 1.09-1.11x one "
        "2-thread worker, alone as fast: bench/results.md); 1 with --n-gpu-layers (each "
        "worker would hold its own copy of the weights in GPU memory). A causal model's "
        "context (KV cache) is per worker: for long contexts set --workers 1 or --n-ctx.",
        parse=_positive_int,
    ),
    Option(
        "memory-limit",
        "Memory a model's workers may use together, e.g. 4GiB (their KV caches, compute "
        "buffers and weights, estimated from the GGUF header before anything is "
        "allocated). A default context that would need more is lowered to the largest "
        "power of two that fits, with a warning; an --n-ctx that cannot fit fails at "
        "start. Default: 0.8 x the memory available (cgroup limit included).",
        parse=_positive_size,
    ),
    Option(
        "queue-size",
        "Requests queued or running at once; beyond it clients get 429 "
        "with Retry-After instead of waiting without bound.",
        default=256,
        parse=_positive_int,
    ),
    Option(
        "queue-tokens",
        "Tokens queued or running at once, per model: bounds the memory a full queue "
        "holds whatever the request sizes (256 x 2048-input requests would be GBs); "
        "beyond it 429 with Retry-After. Default 1,048,576.",
        default=1 << 20,
        parse=_positive_int,
    ),
    Option(
        "bulk-max-wait",
        "Seconds a large request may wait behind a stream of small ones before it goes "
        "next (small requests go first so interactive queries stay fast). Default 0.5.",
        default=0.5,
        parse=_positive_float,
    ),
    *CACHE_OPTIONS,
    Option(
        "request-timeout",
        "Seconds a request may take before 504; its queued work is dropped.",
        default=60.0,
        parse=_positive_float,
    ),
    Option(
        "worker-hang-timeout",
        "Seconds one decode may run in a worker before the worker counts as hung: it is "
        "killed and replaced, /ready names it meanwhile, and its inputs are retried as "
        "after a crash (alone; one that hangs twice gets 400 input_crashed_worker). Keep "
        "it well above the slowest healthy decode (a full --max-batch-tokens batch on "
        "this model and hardware); it does not follow --request-timeout. Default 300.",
        default=300.0,
        parse=_positive_float,
    ),
    Option(
        "max-inputs-per-request",
        "Most inputs in one request (OpenAI allows 2048).",
        default=2048,
        parse=_positive_int,
    ),
    Option(
        "max-body-bytes",
        "Largest request body; larger ones get 413.",
        default=16 * 1024 * 1024,
        parse=_positive_int,
    ),
    Option(
        "max-tokenize-tokens",
        "Most token ids one /tokenize answer or /detokenize request may hold; more is a "
        "413. Bounds their memory: with pieces a token costs ~60 bytes of server heap "
        "(README: Limits). Default 262,144.",
        default=1 << 18,
        parse=_positive_int,
    ),
    Option(
        "max-instruction-length",
        "Most characters in a request's `instruction` (400 beyond): it is tokenized in "
        "front of every input of the request. Default 2048.",
        default=2048,
        parse=_positive_int,
    ),
    Option(
        "api-key",
        "Require 'Authorization: Bearer <key>'; repeat for several keys (env: "
        "comma-separated). None by default, fine on loopback. At least 16 visible ASCII "
        "characters: an empty or short key (an unset variable) fails the start.",
        parse=_key,
        multiple=True,
        secret=True,
    ),
    Option(
        "admin-key",
        "Key for the /admin API (reload, load/unload models, drain, workers); "
        "repeat for several; at least 16 characters, like --api-key. Without one the "
        "admin API is off.",
        parse=_key,
        multiple=True,
        secret=True,
    ),
    Option("api-key-file", "File with one API key per line, added to --api-key.", parse=Path),
    Option(
        "models-dir",
        "Directory that model files loaded through the admin API must lie under "
        "(default: $EMBELLAMA_HOME/models, where the built-in model lives). Other paths "
        "are refused with one message that says nothing about the file.",
        parse=Path,
    ),
    Option(
        "rate-limit-rps",
        "Requests per second per key (per client address without keys); "
        "beyond it 429 with Retry-After. Default: unlimited.",
        parse=_positive_float,
    ),
    Option(
        "rate-limit-tpm",
        "Tokens per minute per key, charged after each request. Default: unlimited.",
        parse=_positive_float,
    ),
    Option(
        "metrics-auth",
        "Require an API key for /metrics too (default: public, like /health and /ready).",
        default=False,
        parse=_boolean,
    ),
    Option(
        "log-level",
        "debug, info, warning or error.",
        default="info",
        parse=_log_level,
        restart=True,
    ),
    Option(
        "log-format",
        "text for people, json for log pipelines.",
        default="text",
        choices=["text", "json"],
        restart=True,
    ),
)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option], title: str) -> None:
    group = parser.add_argument_group(title)
    for option in options:
        help = f"{option.help} [env: {option.env}]"
        if option.switch:
            group.add_argument(
                f"--{option.flag}", dest=option.dest, action="store_const", const=True, help=help
            )
            continue
        group.add_argument(
            f"--{option.flag}",
            dest=option.dest,
            type=option.parse,
            choices=option.choices,
            action="append" if option.multiple else "store",
            default=None,
            help=help,
        )


def resolve(
    args: argparse.Namespace | None,
    options: Sequence[Option],
    environ: Mapping[str, str] | None = None,
    file_values: Mapping[str, Any] | None = None,
    file_name: str = "config file",
) -> dict[str, Any]:
    """Flag, else environment variable, else config file, else default.

    A bad value from any source fails here, naming the variable or file key.
    """
    environ = os.environ if environ is None else environ
    file_values = file_values or {}
    values: dict[str, Any] = {}
    for option in options:
        value = getattr(args, option.dest, None) if args is not None else None
        if value is None and option.env in environ:
            value = _parse(option, environ[option.env], option.env)
        if value is None and option.file_key in file_values:
            value = _parse(option, file_values[option.file_key], f"{file_name}: {option.file_key}")
        values[option.dest] = _default(option) if value is None else value
    return values


def _default(option: Option) -> Any:
    """A default written as text ("256MB") parsed like a given value, so a setting reads
    the same whichever source gave it (a reload compares them)."""
    if isinstance(option.default, str) and option.parse is not str:
        return option.parse(option.default)
    return option.default


def _parse(option: Option, raw: object, where: str) -> Any:
    if option.multiple and isinstance(raw, list):
        parts = raw
    elif option.multiple:  # "a,,b" or "" is a mistake for a key, a slip elsewhere
        parts = [p for p in str(raw).split(",") if p or option.secret]
    else:
        parts = [raw]
    try:
        parsed = [option.parse(str(part)) for part in parts]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        shown = "" if option.secret else f"={raw!r}"
        raise ConfigError(f"invalid {where}{shown}: {exc}") from None
    if option.choices and any(p not in option.choices for p in parsed):
        raise ConfigError(f"invalid {where}={raw!r}; choose from {', '.join(option.choices)}")
    return parsed if option.multiple else parsed[0]


def default_workers(n_gpu_layers: int) -> int:
    """Serving's default: two workers that lend each other threads on a CPU (one per
    core would multiply contexts on big machines for no measured gain), one on a GPU."""
    return 1 if n_gpu_layers else min(os.cpu_count() or 1, 2)


def model_config_from(
    values: Mapping[str, Any], *, workers: int = 1, serving: bool = False
) -> ModelConfig:
    """The `ModelConfig` the options describe; the default model only when no path is given.

    `serving`: for `embellama serve`, whose default batch budget depends on its workers.
    """
    path = values["model_path"] or require_default_model()
    name = values["model_name"] or (DEFAULT_MODEL_NAME if values["model_path"] is None else None)
    threads = values["threads_per_worker"] or max(1, (os.cpu_count() or 1) // workers)
    return ModelConfig(
        path=path,
        name=name,
        aliases=tuple(values["model_alias"] or ()),
        pooling=Pooling.parse(values["pooling"]) if values["pooling"] else None,
        normalization=Normalization.parse(values["normalization"]),
        norm_p=values["norm_p"],
        n_threads=threads,
        n_ctx=values["n_ctx"],
        n_gpu_layers=values["n_gpu_layers"],
        batching=BatchingConfig(
            values["max_batch_tokens"]
            or (SERVING_MAX_BATCH_TOKENS if serving and workers > 1 else DEFAULT_MAX_BATCH_TOKENS),
            values["max_batch_sequences"],
        ),
        query_prefix=values["query_prefix"],
        document_prefix=values["document_prefix"],
        instruction_template=_unescape(values["instruction_template"]),
        add_eos=values["add_eos"],
        kind=ModelKind.parse(values["model_kind"]) if values["model_kind"] else None,
        allow_unverified_architecture=values["allow_unverified_architecture"],
        cache_version=values["cache_version"],
    )


def _unescape(text: str | None) -> str | None:
    """A flag or variable cannot hold a newline; "\\n" in one stands for it."""
    return None if text is None else text.replace("\\n", "\n")


def cache_from(values: Mapping[str, Any]) -> EmbeddingCache | None:
    """The cache the options describe; None when both tiers are off."""
    if values["cache_size"] == 0 and not values["cache_url"]:
        return None
    return EmbeddingCache.create(
        values["cache_size"],
        redis_url=values["cache_url"],
        namespace=values["cache_namespace"],
        ttl=values["cache_ttl"],
        redis_read_timeout=values["cache_read_timeout"],
        redis_write_timeout=values["cache_write_timeout"],
    )
