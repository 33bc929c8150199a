"""API and admin keys as an operator sets them: an empty, blank or short key from a flag,
a variable or the config file fails the start (and a reload) in one line naming where it
came from, never the key itself; a reload with a bad key keeps the running keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, free_port, serving

USER_KEY = "sk-keys-user-0000000001"
ADMIN_KEY = "sk-keys-admin-000000001"


def _environ(extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBELLAMA_")}
    home = os.environ.get("EMBELLAMA_HOME")
    return {**clean, **({"EMBELLAMA_HOME": home} if home else {}), **extra}


def _refused(args: list[str], env: dict[str, str]) -> str:
    """The server must exit 2 at start with exactly one line on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "embellama.cli.main", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=30,  # a server that starts anyway would run until this
        env=_environ(env),
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(["--api-key", ""], {}, "argument --api-key: a key is empty", id="flag-empty"),
        pytest.param(
            ["--admin-key", "   "], {}, "argument --admin-key: a key is empty", id="flag-blank"
        ),
        pytest.param(
            ["--api-key", "sk-short-key"],
            {},
            "argument --api-key: a key is shorter than 16",
            id="flag-short",
        ),
        pytest.param(
            ["--admin-key", "sk-has a-space-000001"],
            {},
            "argument --admin-key: a key contains a space",
            id="flag-space",
        ),
        pytest.param(
            [],
            {"EMBELLAMA_ADMIN_KEY": ""},
            "invalid EMBELLAMA_ADMIN_KEY: a key is empty",
            id="env-empty",
        ),
        pytest.param(
            [],
            {"EMBELLAMA_API_KEY": " "},
            "invalid EMBELLAMA_API_KEY: a key is empty",
            id="env-blank",
        ),
        pytest.param(
            [],
            {"EMBELLAMA_API_KEY": f"{USER_KEY},sk-tiny"},
            "invalid EMBELLAMA_API_KEY: a key is shorter than 16",
            id="env-short",
        ),
        pytest.param(
            [],
            {"EMBELLAMA_API_KEY": f"{USER_KEY},"},
            "invalid EMBELLAMA_API_KEY: a key is empty",
            id="env-trailing-comma",
        ),
    ],
)
def test_a_bad_key_from_a_flag_or_variable_fails_the_start(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    line = _refused(args, env)
    assert expected in line, line
    assert "sk-short-key" not in line and "sk-tiny" not in line and USER_KEY not in line


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        pytest.param('[server]\napi_key = [""]\n', ": api_key: a key is empty", id="empty"),
        pytest.param(
            '[server]\nadmin_key = "sk-tiny"\n',
            ": admin_key: a key is shorter than 16",
            id="short",
        ),
        pytest.param(
            '[[keys]]\nkey = "  "\nrequests_per_second = 1\n',
            "[[keys]] #1: 'key' is empty",
            id="keys-blank",
        ),
    ],
)
def test_a_bad_key_in_the_config_file_fails_the_start(
    tmp_path: Path, toml: str, expected: str
) -> None:
    config = tmp_path / "keys.toml"
    config.write_text(toml)
    line = _refused(["--config", str(config)], {})
    assert str(config) in line and expected in line, line
    assert "sk-tiny" not in line


def test_a_bad_key_file_fails_the_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# team keys\n{USER_KEY}\nsk-tiny\n")
    line = _refused(["--api-key-file", str(keys)], {})
    assert f"--api-key-file {keys}, line 3: a key is shorter than 16" in line, line
    keys.write_text("# nothing yet\n\n")  # an empty secret mount must not mean "no keys"
    assert f"--api-key-file {keys} holds no key" in _refused(["--api-key-file", str(keys)], {})


def _config(minilm: Path, api_key: str, extra: str = "") -> str:
    return f"""
[server]
api_key = ["{api_key}"]
admin_key = ["{ADMIN_KEY}"]
{extra}

[[models]]
name = "m"
path = "{minilm}"
workers = 1
threads_per_worker = 1
"""


@pytest.fixture(scope="module")
def configured(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    config = tmp_path_factory.mktemp("keys") / "embellama.toml"
    config.write_text(_config(minilm_gguf, USER_KEY))
    with serving(["--config", str(config)], server_logs) as process:
        yield process, config


def _embed(server: ServerProcess, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    url = server.url + "/v1/embeddings"
    return httpx.post(url, json={"input": "x"}, headers=headers, timeout=30).status_code


def test_a_reload_with_a_bad_key_is_refused_and_the_old_keys_keep_serving(
    configured: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, config = configured
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for bad in ("", "   ", "sk-tiny"):
        config.write_text(_config(minilm_gguf, bad))
        refused = httpx.post(server.url + "/admin/reload", headers=admin, timeout=60)
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]["message"]
        assert f"{config}: api_key: a key" in message and "sk-tiny" not in message, message
        assert _embed(server, f"Bearer {USER_KEY}") == 200  # the running keys still hold
        for missing in (None, "", "Bearer", f"Basic {USER_KEY}", USER_KEY):
            assert _embed(server, missing) == 401, missing
        assert httpx.get(server.url + "/info").status_code == 401
    config.write_text(_config(minilm_gguf, USER_KEY))


def test_a_reload_reports_settings_that_need_a_restart(
    configured: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, config = configured
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    before = httpx.get(server.url + "/admin/config", headers=admin).json()["server"]
    extra = 'cache_size = "1MB"\nlog_level = "debug"\nmax_body_bytes = 4096'
    config.write_text(_config(minilm_gguf, USER_KEY, extra))
    reloaded = httpx.post(server.url + "/admin/reload", headers=admin, timeout=60)
    assert reloaded.status_code == 200, reloaded.text
    pending = reloaded.json()["restart_required"]
    assert pending == {
        "cache_size": {"in_force": before["cache_size"], "configured": 1_000_000},
        "log_level": {"in_force": "info", "configured": "debug"},
    }
    shown = httpx.get(server.url + "/admin/config", headers=admin).json()
    assert shown["server"]["cache_size"] == before["cache_size"]  # what really runs
    assert shown["server"]["log_level"] == "info"
    assert shown["server"]["max_body_bytes"] == 4096  # a reload applies this one
    assert shown["restart_required"] == pending
    big = httpx.post(
        server.url + "/v1/embeddings",
        json={"input": "x" * 5000},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    )
    assert big.status_code == 413
    assert "take effect after a restart" in server.log()
    # The running value written out ("256MB", the default) is no change.
    config.write_text(_config(minilm_gguf, USER_KEY, 'cache_size = "256MB"'))
    again = httpx.post(server.url + "/admin/reload", headers=admin, timeout=60)
    assert again.status_code == 200 and again.json()["restart_required"] == {}, again.text
