"""Everything `embellama serve` runs, from flags, `EMBELLAMA_*` variables and a TOML file.

Precedence: flag > environment > config file > default, through the one option table
in `options.py`. Models come from the file's `[[models]]` when it has any (each entry
is complete on its own; a model flag or variable beside them is refused, not ignored),
else from the model flags. Relative paths in the file are taken from its folder. The
cores are split among the workers of every model. Read again on every reload.

    [server]                      # any server option, by its flag name with "_"
    port = 8080
    api_key = ["sk-team-a-7f3e9c2b41d8"]   # keys: at least 16 visible characters
    admin_key = ["sk-admin-0c5a8e61f2b9"]
    rate_limit_tpm = 100000

    [[keys]]                      # per-key limits (the key is also accepted); a limit
    key = "sk-team-b-93d1a7e4c6f0"  # left out is the [server] one (here tokens per minute)
    requests_per_second = 20

    [[models]]                    # any model option, by its flag name without "model-"
    name = "minilm"
    path = "/models/all-MiniLM-L6-v2.f16.gguf"
    aliases = ["text-embedding-3-small"]
    workers = 2

    [[models]]                    # a second version of "minilm": served as minilm@v2,
    name = "minilm"               # and the first entry as minilm@1; "minilm" routes
    version = "v2"                # by weight (the first entry's default is 100)
    weight = 10
    path = "/models/minilm-v2.gguf"
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embellama.cli.options import (
    MODEL_OPTIONS,
    SERVER_OPTIONS,
    Option,
    default_workers,
    model_config_from,
    resolve,
)
from embellama.config import (
    ModelSpec,
    ServiceLimits,
    check_family_weights,
    first_duplicate_name,
    with_versions,
)
from embellama.errors import ConfigError
from embellama.server.security import RateLimits, SigningPolicy, key_problem, mask_key
from embellama.server.state import ServerLimits

__all__ = ["ServePlan", "load_plan", "masked_settings", "model_spec_from_fields"]

_WORKERS = next(option for option in SERVER_OPTIONS if option.dest == "workers")
_MODEL_KEYS = {option.file_key for option in (*MODEL_OPTIONS, _WORKERS)}
_SERVER_KEYS = {option.file_key for option in SERVER_OPTIONS} - {"config"}
_KEY_FIELDS = {
    "key",
    "requests_per_second",
    "tokens_per_minute",
    "signing_secret",
    "require_signature",
}


@dataclass(frozen=True)
class ServePlan:
    server: dict[str, Any]
    models: tuple[ModelSpec, ...]
    limits: ServerLimits
    keys: tuple[str, ...]
    admin_keys: tuple[str, ...]
    rate_limits: RateLimits
    key_rate_limits: dict[str, RateLimits] = field(default_factory=dict)
    signing: SigningPolicy = field(default_factory=SigningPolicy)


def load_plan(args: argparse.Namespace, config_path: Path | None) -> ServePlan:
    document = _read(config_path) if config_path else {}
    name = str(config_path)
    # Relative paths in the file mean beside the file, wherever the server was started.
    folder = config_path.absolute().parent if config_path else Path.cwd()
    _check_keys(document, {"server", "models", "keys"}, name)
    server_section = document.get("server", {})
    _check_keys(server_section, _SERVER_KEYS, f"{name} [server]")
    server_section = _beside(server_section, ("api_key_file", "models_dir"), folder)
    server = resolve(args, SERVER_OPTIONS, file_values=server_section, file_name=name)
    models = _versioned(_models(args, server, document.get("models", []), name, folder))
    keys, key_limits = _keys(server, document.get("keys", []), name)
    signing = _signing(server, document.get("keys", []), name)
    return ServePlan(
        server=server,
        models=tuple(models),
        limits=ServerLimits(
            max_inputs_per_request=server["max_inputs_per_request"],
            max_body_bytes=server["max_body_bytes"],
            max_tokenize_tokens=server["max_tokenize_tokens"],
            max_instruction_length=server["max_instruction_length"],
        ),
        keys=tuple(keys),
        admin_keys=tuple(server["admin_key"] or ()),
        rate_limits=RateLimits(server["rate_limit_rps"], server["rate_limit_tpm"]),
        key_rate_limits=key_limits,
        signing=signing,
    )


def _versioned(models: list[ModelSpec]) -> list[ModelSpec]:
    """Entries sharing a name are its versions ("1" where none is given), each with its
    weight (100 for a name's first, 0 for the rest, unless given); a name@version or
    alias used twice, or a name whose weights sum to 0, is refused."""
    configs = with_versions([spec.config for spec in models])
    duplicate = first_duplicate_name(configs)
    if duplicate is not None:
        raise ConfigError(f"model name or alias used twice: {duplicate}")
    check_family_weights(configs)
    return [
        dataclasses.replace(spec, config=config)
        for spec, config in zip(models, configs, strict=True)
    ]


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _check_keys(section: object, allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _service_limits(server: dict[str, Any], workers: int) -> ServiceLimits:
    return ServiceLimits(
        workers=workers,
        max_queued_requests=server["queue_size"],
        max_queued_tokens=server["queue_tokens"],
        bulk_max_wait=server["bulk_max_wait"],
        request_timeout=server["request_timeout"],
        memory_limit=server["memory_limit"],
        worker_hang_timeout=server["worker_hang_timeout"],
    )


def _beside(section: dict[str, Any], keys: tuple[str, ...], folder: Path) -> dict[str, Any]:
    """`section` with its relative paths under `keys` made relative to `folder`."""
    fixed = dict(section)
    for key in keys:
        value = section.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            fixed[key] = str(folder / value)
    return fixed


def _models(
    args: argparse.Namespace, server: dict[str, Any], entries: object, name: str, folder: Path
) -> list[ModelSpec]:
    if not isinstance(entries, list):
        raise ConfigError(f"{name}: 'models' must be an array of tables ([[models]])")
    if not entries:
        values = resolve(args, MODEL_OPTIONS)
        workers = server["workers"] or default_workers(values["n_gpu_layers"])
        config = model_config_from(values, workers=workers, serving=True)
        return [ModelSpec(config, _service_limits(server, workers))]
    _refuse_model_flags(args, name)
    checked = [
        _entry_values(entry, f"{name} [[models]] #{index + 1}", folder)
        for index, entry in enumerate(entries)
    ]
    # The cores are split among every model's workers: two models of 2 workers each on 2
    # cores would otherwise run 4 threads that preempt each other at ggml's barriers.
    share = max(1, default_workers(0) // len(checked))
    workers = [
        values["workers"] or server["workers"] or (1 if values["n_gpu_layers"] else share)
        for values in checked
    ]
    return [
        _model_plan(values, server, count, sharing=sum(workers))
        for values, count in zip(checked, workers, strict=True)
    ]


def _refuse_model_flags(args: argparse.Namespace, name: str) -> None:
    """A model flag or variable beside a file's `[[models]]` would be ignored, or would
    have to pick one of several entries: refused, naming it, instead."""
    for option in MODEL_OPTIONS:
        given = getattr(args, option.dest, None) is not None
        if given or option.env in os.environ:
            what = f"--{option.flag}" if given else option.env
            raise ConfigError(
                f"{what} cannot be combined with the [[models]] of {name}: set "
                f"'{option.file_key}' in the model's entry there (flags and variables "
                "override only [server] settings)"
            )


def _entry_values(entry: object, where: str, folder: Path | None) -> dict[str, Any]:
    """A `[[models]]` entry (or admin body) checked and parsed; a relative `path` is taken
    beside the config file (`folder`), and one that is missing says where it looked."""
    _check_keys(entry, _MODEL_KEYS, where)
    assert isinstance(entry, dict)
    if "path" not in entry:
        raise ConfigError(f"{where}: 'path' is required")
    values = resolve(
        None, (*MODEL_OPTIONS, _WORKERS), environ={}, file_values=entry, file_name=where
    )
    calibration: Path | None = values["calibration_file"]
    if folder is not None and calibration and not calibration.expanduser().is_absolute():
        values["calibration_file"] = folder / calibration  # beside the file, like `path`
    path: Path = values["model_path"]
    if folder is not None and not path.expanduser().is_absolute():
        values["model_path"] = folder / path
        if not values["model_path"].exists():
            raise ConfigError(
                f"{where}: model file not found: {values['model_path']} (a relative "
                f"'path' is taken from the config file's folder, {folder})"
            )
    return values


def _model_plan(
    values: dict[str, Any], server: dict[str, Any], workers: int, sharing: int | None = None
) -> ModelSpec:
    config = model_config_from(values, workers=workers, serving=True, sharing=sharing)
    return ModelSpec(config, _service_limits(server, workers))


def _model_entry(entry: object, server: dict[str, Any], where: str) -> ModelSpec:
    values = _entry_values(entry, where, None)
    workers = values["workers"] or default_workers(values["n_gpu_layers"])
    return _model_plan(values, server, workers)


def model_spec_from_fields(name: str, fields: object, server: dict[str, Any]) -> ModelSpec:
    """An admin API body, checked like a `[[models]]` entry and, being JSON, by type too.

    `{"n_ctx": "8"}`, `{"aliases": "abc"}` or `{"n_threads": 1.5}` are refused, never
    coerced: a typo in an API call must not become a different model.
    """
    where = "the request body"
    if not isinstance(fields, dict):
        raise ConfigError(f"{where} must be a JSON object with at least 'path'")
    if "name" in fields:
        raise ConfigError(f"{where}: 'name' comes from the URL, not the body")
    _check_keys(fields, _MODEL_KEYS - {"name"}, where)
    for option in (*MODEL_OPTIONS, _WORKERS):
        if option.file_key in fields:
            _check_json_type(option, fields[option.file_key], where)
    return _model_entry({**fields, "name": name}, server, where)


def _check_json_type(option: Option, value: object, where: str) -> None:
    kind = type(option.default) if option.default is not None else None
    if option.multiple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
    elif option.parse.__name__ == "_boolean":
        ok, expected = isinstance(value, bool), "true or false"
    elif option.parse in (str, Path) or option.choices:
        ok, expected = isinstance(value, str), "a string"
    elif kind is float or option.parse.__name__.endswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    else:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    if not ok:
        raise ConfigError(f"{where}: '{option.file_key}' must be {expected}, got {value!r}")


def masked_settings(plan: ServePlan) -> dict[str, Any]:
    """The server settings in force, safe to show: keys masked, paths as text."""
    shown: dict[str, Any] = {}
    for key, value in plan.server.items():
        if key in ("api_key", "admin_key"):
            value = [mask_key(k) for k in value or ()]
        elif key == "signing_secret" and value:
            value = mask_key(value)
        elif key == "cache_url" and value and "@" in value:  # redis://user:password@host
            scheme, _, rest = value.partition("://")
            value = f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
        elif isinstance(value, Path):
            value = str(value)
        shown[key] = value
    shown["keys"] = [mask_key(k) for k in plan.keys]
    return shown


def _keys(
    server: dict[str, Any], entries: object, name: str
) -> tuple[list[str], dict[str, RateLimits]]:
    keys = list(server["api_key"] or [])
    if server["api_key_file"] is not None:
        keys += _key_file(Path(server["api_key_file"]))
    if not isinstance(entries, list):
        raise ConfigError(f"{name}: 'keys' must be an array of tables ([[keys]])")
    limits: dict[str, RateLimits] = {}
    for index, entry in enumerate(entries):
        where = f"{name} [[keys]] #{index + 1}"
        _check_keys(entry, _KEY_FIELDS, where)
        key = entry.get("key")
        if not isinstance(key, str):
            raise ConfigError(f"{where}: 'key' must be a string")
        problem = key_problem(key)
        if problem is not None:
            raise ConfigError(f"{where}: 'key' {problem}")
        rps, tpm = entry.get("requests_per_second"), entry.get("tokens_per_minute")
        for label, value in (("requests_per_second", rps), ("tokens_per_minute", tpm)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise ConfigError(f"{where}: '{label}' must be a positive number")
        limits[key] = RateLimits(rps, tpm)
        if key not in keys:
            keys.append(key)
    return keys, limits


def _signing(server: dict[str, Any], entries: list[Any], name: str) -> SigningPolicy:
    """Who must sign with which secret: the server-wide one (flag, variable, file key or
    --signing-secret-file) and each [[keys]] entry's own. `_keys` checked the entries."""
    secret = server["signing_secret"]
    if server["signing_secret_file"] is not None:
        if secret is not None:
            raise ConfigError("set --signing-secret or --signing-secret-file, not both")
        secret = _secret_file(Path(server["signing_secret_file"]))
    key_secrets: dict[str, str] = {}
    required: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{name} [[keys]] #{index + 1}"
        own, must = entry.get("signing_secret"), entry.get("require_signature", False)
        if own is not None:
            problem = key_problem(own) if isinstance(own, str) else "is not a string"
            if problem is not None:
                raise ConfigError(f"{where}: 'signing_secret' {problem}")
            key_secrets[entry["key"]] = own
        if not isinstance(must, bool):
            raise ConfigError(f"{where}: 'require_signature' must be true or false")
        if must and own is None and secret is None:
            raise ConfigError(
                f"{where}: 'require_signature' needs a 'signing_secret' (or --signing-secret)"
            )
        if must:
            required.add(entry["key"])
    if server["require_signed_requests"] and secret is None:
        keys = list(server["api_key"] or [])
        if not entries or keys or len(key_secrets) < len(entries):
            raise ConfigError(
                "--require-signed-requests needs --signing-secret, --signing-secret-file or "
                "EMBELLAMA_SIGNING_SECRET (or a signing_secret on every [[keys]] entry)"
            )
    return SigningPolicy(
        secret=secret,
        required=bool(server["require_signed_requests"]) and secret is not None,
        key_secrets=key_secrets,
        required_keys=frozenset(required)
        | (frozenset(key_secrets) if server["require_signed_requests"] else frozenset()),
        window=server["signature_window"],
        capacity=server["signature_replay_capacity"],
    )


def _secret_file(path: Path) -> str:
    """The file's one line (a trailing newline is not part of the secret)."""
    try:
        secret = path.read_text().strip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read --signing-secret-file: {exc.strerror}") from None
    problem = key_problem(secret)
    if problem is not None:
        raise ConfigError(f"--signing-secret-file {path}: the secret {problem}")
    return secret


def _key_file(path: Path) -> list[str]:
    """One key per line; blank lines and `#` comments skipped. A file without any key is
    refused: an empty secret mount must not start a server that asks for none."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --api-key-file: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        problem = key_problem(key)
        if problem is not None:
            raise ConfigError(f"--api-key-file {path}, line {number}: a key {problem}")
        keys.append(key)
    if not keys:
        raise ConfigError(f"--api-key-file {path} holds no key")
    return keys


def config_path_from(args: argparse.Namespace) -> Path | None:
    """`--config`, else `EMBELLAMA_CONFIG`; the only option a config file cannot set."""
    value = getattr(args, "config", None) or os.environ.get("EMBELLAMA_CONFIG")
    return Path(value) if value else None
