"""`--worker-hang-timeout` reaches the worker pool from every source, and is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from embellama.cli.plan import load_plan
from embellama.cli.serve import parse_serve_args
from embellama.config import ServiceLimits
from embellama.errors import ConfigError


def _hang_timeout(minilm_gguf: Path, *flags: str, config: Path | None = None) -> float | None:
    args = parse_serve_args(["--model-path", str(minilm_gguf), *flags])
    return load_plan(args, config).models[0].limits.worker_hang_timeout


def test_default_is_generous_and_independent_of_the_request_timeout(minilm_gguf: Path) -> None:
    assert _hang_timeout(minilm_gguf) == 300.0
    assert _hang_timeout(minilm_gguf, "--request-timeout", "5") == 300.0


def test_flag_variable_and_config_file_set_it(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _hang_timeout(minilm_gguf, "--worker-hang-timeout", "42.5") == 42.5
    config = tmp_path / "serve.toml"
    config.write_text("[server]\nworker_hang_timeout = 17\n")
    assert _hang_timeout(minilm_gguf, config=config) == 17.0
    monkeypatch.setenv("EMBELLAMA_WORKER_HANG_TIMEOUT", "9")
    assert _hang_timeout(minilm_gguf) == 9.0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_value_fails_at_start(
    minilm_gguf: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_serve_args(["--model-path", str(minilm_gguf), "--worker-hang-timeout", value])
    assert "--worker-hang-timeout" in capsys.readouterr().err


@pytest.mark.parametrize("value", [0.0, -3.0])
def test_the_library_refuses_a_deadline_that_is_not_positive(value: float) -> None:
    with pytest.raises(ConfigError, match="worker_hang_timeout"):
        ServiceLimits(workers=1, worker_hang_timeout=value)
