"""Every command-line knob, defined once: flag, `EMBELLAMA_*` variable, type, help.

An environment variable sets the default; a flag overrides it. A bad value in either
fails at start with one line naming the flag or the variable; a secret's value is never
repeated in that line.
"""

from __future__ import annotations

import argparse
import math
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
    InferenceEngine,
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
    "TRACING_OPTIONS",
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
    # A key (or a URL with a password): its value never appears in an error, and an empty
    # entry of a repeated option is refused, not skipped.
    secret: bool = False
    # Read once at start (the socket, the cache, logging): a reload reports a new value
    # as needing a restart instead of showing it as in force.
    restart: bool = False
    # What `--help` says the default is, where `default` cannot say it (None, computed).
    default_text: str | None = None

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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer parser refusing what lies outside low..high, the bounds in its message."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


# A TCP port: 0 would let the OS pick one while the log names port 0, and the kernel
# truncates 99999 to a random-looking 34463.
_port = _in_range(1, 65535)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):  # 1e999 is inf: a timeout or a wait that never ends
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _redis_url(text: str) -> str:
    """A URL the Redis client accepts, checked by it (scheme, port, db) here: anything
    else would fail later, in a traceback. Its messages never quote the URL."""
    from redis.asyncio.connection import parse_url

    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            "expected redis://host:port/db, rediss://... or unix:///path"
        )
    try:
        parse_url(text)
    except ValueError as exc:  # "Port out of range 0-65535", an invalid db or query value
        raise argparse.ArgumentTypeError(f"not a valid Redis URL: {exc}") from None
    return text


def _not_empty(text: str) -> str:
    """An empty host would listen on every interface; an empty namespace, share keys."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _key(text: str) -> str:
    """An API or admin key; an empty one would let a request without a key in."""
    problem = key_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"a key {problem}")
    return text


def _secret(text: str) -> str:
    """A signing secret: the key rules (16+ visible ASCII characters)."""
    problem = key_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"a secret {problem}")
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
        "GGUF file to serve.",
        parse=Path,
        default_text=f"the built-in {DEFAULT_MODEL_NAME}",
    ),
    Option(
        "model-name",
        "Name clients pass as `model`.",
        default_text=f"the file name; {DEFAULT_MODEL_NAME} for the built-in model",
    ),
    Option(
        "model-alias",
        "Another name the model answers to; repeat for several.",
        multiple=True,
        default_text="none",
    ),
    Option(
        "model-kind",
        "What the file must be: 'embedding' or 'rerank' (a cross-encoder); a mismatch "
        "fails the load.",
        choices=[k.value for k in ModelKind],
        default_text="whatever the file is",
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
        "engine",
        "What runs the forward pass: 'llama.cpp', or 'onnxruntime' for a BERT or NomicBERT "
        "F32/F16/BF16 embedding file on the CPU (the graph is built from the GGUF's tensors "
        "and cached). Tokenization is llama.cpp's on either. 'auto': onnxruntime where it "
        "runs the file (measured faster: bench/engines.md), llama.cpp for the rest.",
        default="auto",
        choices=[e.value for e in InferenceEngine],
    ),
    Option(
        "pooling",
        "Override the GGUF header's pooling.",
        choices=[p.value for p in Pooling if p is not Pooling.RANK],
        default_text="the header's; decoders without one use the last token",
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
        "llama.cpp threads in each worker. Keep workers x threads at or below the cores: "
        "ggml's threads wait on each other at every step, so one preempted thread stalls "
        "the whole decode (bench/results.md).",
        parse=_positive_int,
        default_text="the cores divided by the workers (in a server, of every model)",
    ),
    Option(
        "n-ctx",
        "Most tokens per input; the model's context is the upper bound.",
        parse=_positive_int,
        default_text="the model's context",
    ),
    Option(
        "n-gpu-layers",
        "Layers to offload to a GPU build of llama.cpp (-1 = all).",
        default=0,
        parse=_in_range(-1),
    ),
    Option(
        "query-prefix",
        'Text put in front of inputs sent with input_type "query" (e5: "query: ").',
        default_text="the built-in table's prefix for this model's family, if any",
    ),
    Option(
        "document-prefix",
        'Text put in front of inputs sent with input_type "document" (e5: "passage: ").',
        default_text="the built-in table's prefix for this model's family, if any",
    ),
    Option(
        "instruction-template",
        'For instruction-following models: "Instruct: {instruction}\\nQuery:"; a request\'s '
        "`instruction` fills it in front of queries.",
        default_text="none",
    ),
    Option(
        "add-eos",
        "Append the vocabulary's EOS to every text: last-token embedders (Qwen3-Embedding) "
        "are trained with it; --no-add-eos never appends it. Token-id inputs never get one.",
        parse=_boolean,
        switch=True,
        default_text="as the GGUF's add-EOS flag says",
    ),
    Option(
        "cache-version",
        "Name this model's cached vectors (memory and Redis) by this label instead of the "
        "file's content fingerprint: replicas with the same label and pooling share "
        "entries whatever their files. Change it whenever the vectors change.",
        default_text="the file's content fingerprint, so only the same file shares entries",
    ),
    Option(
        "model-version",
        "This entry is one version of its name (several [[models]] entries with one name "
        "and distinct versions): served as name@version, which pins it; the name routes "
        "by weight, each client staying on one version.",
        default_text="none (the only version); '1' where entries share a name",
    ),
    Option(
        "model-weight",
        "This version's share of the requests for its name, relative to its other "
        "versions' (90 and 10: 90 %). 0 serves pinned requests only; change it at run "
        "time with POST /admin/models/{name}/weights.",
        parse=_non_negative_float,
        default_text="100 for a name's first version, 0 for the others",
    ),
    Option(
        "calibration-file",
        "Text file (one text per line, 16 to 10,000 lines) whose vectors set this model's "
        "int8/uint8 range: the largest |value| over them, shared by every dimension so "
        "integer dot products rank like float ones, maps onto 256 steps. "
        "Use texts like the ones you will index; the built-in set is 96 short mixed-domain "
        "queries and passages (calibration.py). Read at load, embedded once on first use.",
        parse=Path,
        default_text="the built-in calibration set",
    ),
    Option(
        "max-batch-tokens",
        "Token budget of one llama.cpp decode. On CPU bigger is not "
        "faster: attention cost grows with the whole batch, and 256 measured best "
        "(bench/batch_budget.md). A server with several workers uses less: a full batch "
        "of short requests is then queued in a busy worker's pipe and short queries wait "
        "less behind bulk work (16 clients: 1.06x; bench/notes.md).",
        parse=_positive_int,
        default_text=f"{DEFAULT_MAX_BATCH_TOKENS}; {SERVING_MAX_BATCH_TOKENS} for a server "
        "with several workers",
    ),
    Option(
        "max-batch-sequences",
        "Most inputs in one decode, 1 to 256 (llama.cpp's limit).",
        default=DEFAULT_MAX_BATCH_SEQUENCES,
        parse=_in_range(1, 256),
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
        "of a decode; repeated queries and re-ingested documents are common.",
        default="256MB",
        parse=_size,
        restart=True,
    ),
    Option(
        "cache-url",
        "redis://host:port/db: a second cache tier shared by replicas (memory stays in "
        "front). If Redis is down or slow the server computes instead; clients see no error.",
        parse=_redis_url,
        secret=True,  # redis://user:password@host: a bad value is not repeated
        restart=True,
        default_text="none (memory only)",
    ),
    Option(
        "cache-ttl",
        "Seconds a vector lives in Redis, at least 1.",
        default=604800.0,
        parse=_ttl_seconds,
        default_text="604800 (7 days)",
    ),
    Option(
        "cache-read-timeout",
        "Seconds a Redis lookup may take before it counts as a miss, for a small one; "
        "each MiB of vectors it fetches adds 50 ms (a 2,048 x 1,024-dim MGET is 8 MiB). "
        "Short, because a miss only costs a decode.",
        default=0.02,
        parse=_positive_float,
    ),
    Option(
        "cache-write-timeout",
        "Seconds a Redis write-behind may take, plus 50 ms per MiB; it never delays a response.",
        default=0.1,
        parse=_positive_float,
        restart=True,
    ),
    Option(
        "cache-namespace",
        "Prefix of this deployment's Redis keys, so several can share one Redis.",
        default="embellama",
        parse=_not_empty,
        restart=True,
    ),
)


def _otlp_url(text: str) -> str:
    """A collector's http(s) URL; credentials belong in OTEL_EXPORTER_OTLP_HEADERS, not
    in a URL that /info and the logs show."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        url.port  # noqa: B018  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError("expected http://host:port or https://host:port")
    if url.username is not None or url.password is not None:
        raise argparse.ArgumentTypeError(
            "put collector credentials in OTEL_EXPORTER_OTLP_HEADERS, not in the URL"
        )
    if url.query or url.fragment:
        raise argparse.ArgumentTypeError("expected a URL without a query or fragment")
    return text


TRACING_OPTIONS = (
    Option(
        "otlp-endpoint",
        "OpenTelemetry collector (OTLP/HTTP, protobuf) to send a trace span per request "
        "to, with children for tokenize, cache lookup, queue wait, decode and encode; "
        "e.g. http://127.0.0.1:4318 (spans go to its /v1/traces). Needs the `otel` extra "
        "(pip install 'embellama[otel]'). Spans are batched on a thread: a slow or "
        "unreachable collector loses spans and never delays a request. The SDK's OTEL_BSP_* "
        "and OTEL_TRACES_SAMPLER variables apply; credentials go in "
        "OTEL_EXPORTER_OTLP_HEADERS.",
        parse=_otlp_url,
        secret=True,  # a refused value (a URL with a password) is not repeated
        restart=True,
        default_text="none: tracing is off and costs nothing",
    ),
    Option(
        "otlp-service-name",
        "`service.name` of this server's spans, as the trace viewer lists it.",
        parse=_not_empty,
        restart=True,
        default_text="OTEL_SERVICE_NAME, else embellama",
    ),
)

SERVER_OPTIONS = (
    Option(
        "config",
        "TOML file with [server] settings, [[models]] and [[keys]]; flags and "
        "EMBELLAMA_* variables override its [server] settings; model flags cannot be "
        "combined with its [[models]]. Relative paths in it are relative to its folder. "
        "Reloaded on SIGHUP and POST /admin/reload.",
        parse=Path,
        default_text="none",
    ),
    Option(
        "host",
        "Address to listen on; loopback by default.",
        default="127.0.0.1",
        parse=_not_empty,
        restart=True,
    ),
    Option("port", "TCP port, 1 to 65535.", default=8080, parse=_port, restart=True),
    Option(
        "workers",
        "Worker processes, each with its own llama.cpp context (weights are memory-mapped, "
        "so shared); a crash in one never takes the server down. Two workers each with half "
        "the threads, where a batch that is all the work there is borrows the idle "
        "worker's threads, measured 1.09-1.11x one 2-thread worker at 16 clients on 2 "
        "cores and alone as fast (bench/results.md); on a GPU each worker would hold its "
        "own copy of the weights. A causal model's context (KV cache) is per worker: for "
        "long contexts set --workers 1 or --n-ctx. Also applies to a config file's "
        "[[models]] without their own `workers`.",
        parse=_positive_int,
        default_text="2 on a CPU with 2 or more cores, shared by the [[models]] of a config "
        "file (at least 1 each); 1 with --n-gpu-layers",
    ),
    Option(
        "memory-limit",
        "Memory a model's workers may use together, e.g. 4GiB (their KV caches, compute "
        "buffers and weights, estimated from the GGUF header before anything is "
        "allocated). A default context that would need more is lowered to the largest "
        "power of two that fits, with a warning; an --n-ctx that cannot fit fails at "
        "start.",
        parse=_positive_size,
        default_text="80% of the memory available (cgroup limit included)",
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
        "beyond it 429 with Retry-After.",
        default=1 << 20,
        parse=_positive_int,
    ),
    Option(
        "bulk-max-wait",
        "Seconds a large request may wait behind a stream of small ones before it goes "
        "next (small requests go first so interactive queries stay fast).",
        default=0.5,
        parse=_positive_float,
    ),
    *CACHE_OPTIONS,
    *TRACING_OPTIONS,
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
        "Largest request body, e.g. 16MiB or a byte count; larger ones get 413.",
        default=16 * 1024 * 1024,
        parse=_positive_size,
    ),
    Option(
        "max-tokenize-tokens",
        "Most token ids one /tokenize answer or /detokenize request may hold; more is a "
        "413. Bounds their memory: with pieces a token costs ~60 bytes of server heap "
        "(README: Limits).",
        default=1 << 18,
        parse=_positive_int,
    ),
    Option(
        "max-instruction-length",
        "Most characters in a request's `instruction` (400 beyond): it is tokenized in "
        "front of every input of the request.",
        default=2048,
        parse=_positive_int,
    ),
    Option(
        "api-key",
        "Require 'Authorization: Bearer <key>'; repeat for several keys (env: "
        "comma-separated). At least 16 visible ASCII characters: an empty or short key "
        "(an unset variable) fails the start.",
        parse=_key,
        multiple=True,
        secret=True,
        default_text="none, fine on loopback",
    ),
    Option(
        "admin-key",
        "Key for the /admin API (reload, load/unload models, drain, workers); "
        "repeat for several; at least 16 characters, like --api-key.",
        parse=_key,
        multiple=True,
        secret=True,
        default_text="none: the admin API is off",
    ),
    Option(
        "api-key-file",
        "File with one API key per line, added to --api-key.",
        parse=Path,
        default_text="none",
    ),
    Option(
        "models-dir",
        "Directory that model files loaded through the admin API must lie under. Other "
        "paths are refused with one message that says nothing about the file.",
        parse=Path,
        default_text="$EMBELLAMA_HOME/models, where the built-in model lives",
    ),
    Option(
        "rate-limit-rps",
        "Requests per second per key (per client address without keys); "
        "beyond it 429 with Retry-After.",
        parse=_positive_float,
        default_text="unlimited",
    ),
    Option(
        "rate-limit-tpm",
        "Tokens per minute per key, charged after each request.",
        parse=_positive_float,
        default_text="unlimited",
    ),
    Option(
        "metrics-auth",
        "Require an API key for /metrics too; without it /metrics is public, like /health "
        "and /ready.",
        default=False,
        parse=_boolean,
        switch=True,
    ),
    Option(
        "require-signed-requests",
        "Refuse (401 invalid_signature) any non-public request without a valid "
        "x-embellama-signature: an HMAC-SHA256 over its time, method, path and body, "
        "each accepted once (README: Signed requests). Needs --signing-secret, or a "
        "signing_secret on every [[keys]] entry.",
        default=False,
        parse=_boolean,
        switch=True,
    ),
    Option(
        "signing-secret",
        "The server-wide secret signatures are checked with (a [[keys]] entry's own "
        "signing_secret takes its place for that key); at least 16 visible characters. "
        "A signature that is sent is checked even when not required.",
        parse=_secret,
        secret=True,
        default_text="none",
    ),
    Option(
        "signing-secret-file",
        "File holding the signing secret (one line), instead of --signing-secret.",
        parse=Path,
        default_text="none",
    ),
    Option(
        "signature-window",
        "Seconds a signature's timestamp may be from the server's clock, either way; "
        "every signature is remembered this long so it is accepted once.",
        default=300.0,
        parse=_positive_float,
    ),
    Option(
        "signature-replay-capacity",
        "Signatures remembered at once (~200 bytes each); when full, new ones are refused "
        "with 503 and Retry-After until the oldest leaves the window, never forgotten "
        "early. 100000 covers 166 signed requests a second over a 300 s window.",
        default=100_000,
        parse=_positive_int,
    ),
    Option(
        "audit-log",
        "JSON-lines audit log: admin actions, refused keys and signatures, rate-limit "
        "refusals (one a second per client, counted), start and stop. '-' is stderr. "
        "Each record is written before the response; if it cannot be, admin actions "
        "answer 503 (embeddings keep serving).",
        restart=True,
        default_text="none",
    ),
    Option(
        "audit-log-max-bytes",
        "Rotate the audit log before a record would take it past this size, e.g. 100MiB; "
        "0 never rotates.",
        default=100 * 1024 * 1024,
        parse=_size,
        restart=True,
    ),
    Option(
        "audit-log-backups",
        "Rotated audit logs kept (PATH.1 is the newest); the oldest beyond goes.",
        default=5,
        parse=_positive_int,
        restart=True,
    ),
    Option(
        "log-level",
        "debug, info, warning or error; llama.cpp's own messages show at debug.",
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


def add_options(
    parser: argparse.ArgumentParser,
    options: Sequence[Option],
    title: str,
    shown_defaults: Mapping[str, str] | None = None,
) -> None:
    """The options as flags; each help ends with its variable and its default.

    `shown_defaults`: by flag, what a command's own default is where it differs from
    the table's (a one-off `embed` caches nothing unless asked).
    """
    group = parser.add_argument_group(title)
    for option in options:
        shown = (shown_defaults or {}).get(option.flag) or shown_default(option)
        # argparse formats help with `%`: a literal one ("80%") must be doubled.
        help = f"{option.help} [env: {option.env}; default: {shown}]".replace("%", "%%")
        if option.switch:  # --flag / --no-flag; None when absent, so the env or file decides
            group.add_argument(
                f"--{option.flag}",
                dest=option.dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help,
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


def shown_default(option: Option) -> str:
    """The default as `--help` says it, from the table: one place for the value and its text."""
    value = option.default
    if option.default_text is not None:
        return option.default_text
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if option.parse in (_size, _positive_size) and isinstance(value, int) and value:
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if value % (1 << shift) == 0:
                return f"{value >> shift}{unit}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    values: Mapping[str, Any],
    *,
    workers: int = 1,
    serving: bool = False,
    sharing: int | None = None,
) -> ModelConfig:
    """The `ModelConfig` the options describe; the default model only when no path is given.

    `serving`: for `embellama serve`, whose default batch budget depends on its workers.
    `sharing`: the workers of every model that split the cores (default: this model's).
    """
    path = values["model_path"] or require_default_model()
    name = values["model_name"] or (DEFAULT_MODEL_NAME if values["model_path"] is None else None)
    threads = values["threads_per_worker"] or max(1, (os.cpu_count() or 1) // (sharing or workers))
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
        version=values["model_version"],
        weight=values["model_weight"],
        calibration_file=values["calibration_file"],
        engine=InferenceEngine.parse(values["engine"]),
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
