"""The command line's edges: every default in --help, ranges, switches, global options,
and a config file's paths and model flags. Parsed in-process, no model loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from embellama import ConfigError
from embellama.cli.main import build_parser, parse_args
from embellama.cli.options import CACHE_OPTIONS, MODEL_OPTIONS, SERVER_OPTIONS, shown_default
from embellama.cli.plan import load_plan
from embellama.cli.serve import parse_serve_args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {n}": s for n, s in _subparsers(sub).items()})
    return found


def _flag_help(parser: argparse.ArgumentParser, flag: str) -> str:
    """An option's help as --help prints it (argparse's own `%` formatting applied)."""
    action = parser._option_string_actions[flag]
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def test_every_subcommands_help_renders_and_ends_each_option_with_its_default() -> None:
    for name, parser in _subparsers(build_parser()).items():
        parser.format_help()  # a literal '%' in a help text used to crash `serve --help`
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if "-h" in action.option_strings:
                continue
            text = _flag_help(parser, action.option_strings[-1])
            assert "default" in text.lower(), f"{name} {action.option_strings}: {text}"


@pytest.mark.parametrize(
    ("flag", "shown"),
    [
        ("--port", "default: 8080]"),
        ("--queue-size", "default: 256]"),
        ("--request-timeout", "default: 60]"),
        ("--max-body-bytes", "default: 16MiB]"),
        ("--max-inputs-per-request", "default: 2048]"),
        ("--cache-size", "default: 256MB]"),
        ("--metrics-auth", "default: off]"),
    ],
)
def test_serve_help_shows_the_tables_defaults(flag: str, shown: str) -> None:
    serve = _subparsers(build_parser())["serve"]
    assert _flag_help(serve, flag).endswith(shown)


def test_a_shown_default_parses_back_to_the_default() -> None:
    for option in (*SERVER_OPTIONS, *MODEL_OPTIONS):
        if option.default_text is None and option.default is not None and not option.switch:
            default = option.default
            expected = option.parse(default) if isinstance(default, str) else default
            assert option.parse(shown_default(option)) == expected, option.flag


def test_embed_help_says_the_cache_is_off_like_its_group() -> None:
    embed = _subparsers(build_parser())["embed"]
    text = _flag_help(embed, "--cache-size")
    assert text.endswith("default: 0 (off); 256MB in front of --cache-url]")
    assert "256MB]" not in _flag_help(embed, "--cache-url")
    assert {o.flag for o in CACHE_OPTIONS} <= {a.lstrip("-") for a in embed._option_string_actions}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "argument --port: must be between 1 and 65535, got 99999"),
        (["--port", "0"], "argument --port: must be between 1 and 65535, got 0"),
        (["--max-batch-sequences", "257"], "must be between 1 and 256, got 257"),
        (["--n-gpu-layers", "-2"], "argument --n-gpu-layers: must be >= -1, got -2"),
        (["--request-timeout", "1e999"], "argument --request-timeout: expected a finite"),
        (["--cache-url", "http://x"], "argument --cache-url: expected redis://"),
        (["--cache-url", "redis://:99999"], "--cache-url: not a valid Redis URL: Port out of"),
        (["--host", ""], "argument --host: must not be empty"),
        (["--cache-namespace", " "], "argument --cache-namespace: must not be empty"),
        (["--max-body-bytes", "0"], "argument --max-body-bytes: must be more than 0 bytes"),
        (["--metrics-auth", "true"], "unrecognized arguments: true"),
    ],
)
def test_bad_flags_fail_in_one_line_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(["serve", *argv])
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EMBELLAMA_PORT", "99999", "invalid EMBELLAMA_PORT='99999': must be between 1 and 65535"),
        ("EMBELLAMA_CACHE_URL", "http://user:hunter2@x", "invalid EMBELLAMA_CACHE_URL: expected"),
        ("EMBELLAMA_METRICS_AUTH", "maybe", "invalid EMBELLAMA_METRICS_AUTH='maybe'"),
    ],
)
def test_bad_variables_fail_naming_the_variable(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch, minilm_gguf: Path
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_plan(parse_serve_args(["--model-path", str(minilm_gguf)]), None)
    assert message in str(error.value) and "hunter2" not in str(error.value)


def test_a_port_out_of_range_in_the_file_names_the_file(minilm_gguf: Path, tmp_path: Path) -> None:
    config = tmp_path / "embellama.toml"
    config.write_text("[server]\nport = 70000\n")
    with pytest.raises(
        ConfigError, match=r"embellama\.toml: port=70000: must be between 1 and 65535"
    ):
        load_plan(parse_serve_args(["--model-path", str(minilm_gguf)]), config)


def test_boolean_flags_take_no_value_and_the_env_and_file_still_say_true_or_false(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ["--model-path", str(minilm_gguf)]

    def metrics_auth(*flags: str, config: Path | None = None) -> bool:
        return bool(load_plan(parse_serve_args([*model, *flags]), config).server["metrics_auth"])

    assert metrics_auth("--metrics-auth") is True
    assert metrics_auth() is False
    config = tmp_path / "embellama.toml"
    config.write_text("[server]\nmetrics_auth = true\n")
    assert metrics_auth(config=config) is True
    assert metrics_auth("--no-metrics-auth", config=config) is False
    monkeypatch.setenv("EMBELLAMA_METRICS_AUTH", "true")
    assert metrics_auth() is True
    plan = load_plan(parse_serve_args([*model, "--add-eos"]), None)
    assert plan.models[0].config.add_eos is True
    plan = load_plan(parse_serve_args([*model, "--no-add-eos"]), None)
    assert plan.models[0].config.add_eos is False


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "--log-level", "debug", "x"],
        ["inspect", "--log-level", "debug", "m.gguf"],
        ["models", "prepare-default", "--log-level", "debug"],
        ["--log-level", "debug", "embed", "x"],
    ],
)
def test_every_subcommand_takes_the_global_options(argv: list[str]) -> None:
    assert parse_args(argv).global_log_level == "debug"


def test_a_global_log_level_before_serve_is_serves_log_level() -> None:
    assert parse_args(["--log-level", "debug", "serve"]).log_level == "debug"
    assert parse_args(["serve", "--log-level", "error"]).log_level == "error"
    assert parse_args(["embed", "x"]).global_log_level is None  # main's default: warning


def test_relative_paths_in_the_file_are_beside_the_file(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "model.gguf").symlink_to(minilm_gguf)
    (folder / "keys.txt").write_text("sk-from-a-key-file-0001\n")
    config = folder / "embellama.toml"
    config.write_text(
        '[server]\napi_key_file = "keys.txt"\nmodels_dir = "models"\n'
        '[[models]]\npath = "model.gguf"\n'
    )
    monkeypatch.chdir(tmp_path)  # started from elsewhere, with a relative --config
    plan = load_plan(parse_serve_args([]), Path("cfg/embellama.toml"))
    assert plan.models[0].config.path == folder / "model.gguf"
    assert plan.keys == ("sk-from-a-key-file-0001",)
    assert plan.server["models_dir"] == folder / "models"


def test_a_missing_relative_model_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "embellama.toml").write_text('[[models]]\npath = "all-MiniLM-L6-v2.f16.gguf"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_plan(parse_serve_args([]), Path("cfg/embellama.toml"))
    assert f"model file not found: {folder / 'all-MiniLM-L6-v2.f16.gguf'}" in str(error.value)
    assert f"from the config file's folder, {folder}" in str(error.value)


def test_model_flags_beside_models_in_the_file_are_refused_naming_them(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "embellama.toml"
    config.write_text(f'[[models]]\npath = "{minilm_gguf}"\n')
    with pytest.raises(
        ConfigError, match=r"--model-path cannot be combined with the \[\[models\]\]"
    ):
        load_plan(parse_serve_args(["--model-path", "other.gguf"]), config)
    monkeypatch.setenv("EMBELLAMA_POOLING", "cls")
    with pytest.raises(ConfigError, match="EMBELLAMA_POOLING cannot be combined"):
        load_plan(parse_serve_args([]), config)
