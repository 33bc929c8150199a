"""The audit log on a real server: a record for start, every admin change (load, unload,
reload with its diff, drain, undrain, cache clear), every refused key or signature,
rate-limit refusals counted (one record a second per client), and stop; none holds a
secret, a full key or an input text. On a full disk (a 256 KiB tmpfs of its own) admin
changes answer 503 and do not run, embeddings keep serving, and no torn line is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from embellama.signing import SIGNATURE_HEADER, sign
from tests.e2e.server import ServerProcess, free_port, serving

USER_KEY = "sk-audit-user-0000000001"
LIMITED_KEY = "sk-audit-limited-000001"
SIGNER_KEY = "sk-audit-signer-0000001"
ADMIN_KEY = "sk-audit-admin-00000001"
SIGNING_SECRET = "audit-signing-secret-0123456789"
TEXT = "confidential input text 7f3e9c"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FIELDS = {"time", "request_id", "client", "key", "method", "route", "action", "outcome", "reason"}


def _config(folder: Path, model: Path, audit: Path, alias: str) -> Path:
    config = folder / "embellama.toml"
    config.write_text(
        f"""
[server]
api_key = ["{USER_KEY}"]
admin_key = ["{ADMIN_KEY}"]
audit_log = "{audit}"
models_dir = "{model.parent}"
workers = 1

[[keys]]
key = "{LIMITED_KEY}"
requests_per_second = 1

[[keys]]
key = "{SIGNER_KEY}"
signing_secret = "{SIGNING_SECRET}"
require_signature = true

[[models]]
name = "minilm"
path = "{model}"
aliases = ["{alias}"]
threads_per_worker = 1
"""
    )
    return config


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]  # a torn line would not parse


def _admin(server: ServerProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, headers=ADMIN, timeout=60, **kwargs)


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_every_admin_action_refusal_start_and_stop_is_recorded(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    config = _config(tmp_path, minilm_gguf, audit, "first-alias")
    refused_rate = 0
    with serving(["--config", str(config)], server_logs) as server:
        url = server.url
        embedded = httpx.post(
            url + "/v1/embeddings", json={"input": TEXT}, headers=_as(USER_KEY), timeout=30
        )
        assert embedded.status_code == 200
        assert _admin(server, "/admin/cache/clear").status_code == 200
        assert _admin(server, "/admin/drain").status_code == 200
        assert _admin(server, "/admin/undrain").status_code == 200
        _config(tmp_path, minilm_gguf, audit, "second-alias")
        assert _admin(server, "/admin/reload").status_code == 200
        load = _admin(server, "/admin/models/extra/load", json={"path": str(minilm_gguf)})
        assert load.status_code == 200, load.text
        assert _admin(server, "/admin/models/extra/unload").status_code == 200
        assert _admin(server, "/admin/models/nothing/unload").status_code == 404
        # Refusals: no key, a wrong key, a wrong admin key, a missing signature.
        assert httpx.get(url + "/v1/models").status_code == 401
        assert (
            httpx.get(url + "/v1/models", headers=_as("sk-wrong-key-000000000")).status_code == 401
        )
        wrong_admin = httpx.post(url + "/admin/drain", headers=_as(USER_KEY))
        assert wrong_admin.status_code == 401
        assert httpx.get(url + "/v1/models", headers=_as(SIGNER_KEY)).status_code == 401
        signed = {**_as(SIGNER_KEY), SIGNATURE_HEADER: sign(SIGNING_SECRET, "GET", "/info", b"")}
        assert httpx.get(url + "/info", headers=signed).status_code == 200
        # A burst over 1 request/s, then one more refusal a second later.
        with httpx.Client(base_url=url, headers=_as(LIMITED_KEY)) as client:
            for _ in range(10):
                refused_rate += client.get("/v1/models").status_code == 429
            time.sleep(1.2)
            for _ in range(3):
                refused_rate += client.get("/v1/models").status_code == 429
        _config(tmp_path, minilm_gguf, audit, "third-alias")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while b"SIGHUP" not in audit.read_bytes():
            assert time.monotonic() < deadline, "no record of the reload on SIGHUP"
            time.sleep(0.1)
    records = _records(audit)
    for entry in records:
        assert set(entry) >= FIELDS, entry
        assert entry["time"].endswith("Z")
    assert records[0]["action"] == "start" and records[0]["models"] == ["minilm"]
    assert records[-1]["action"] == "stop"

    done = {(r["action"], r["outcome"]) for r in records}
    for action in ("cache_clear", "drain", "undrain", "reload", "load", "unload"):
        assert (action, "started") in done and (action, "ok") in done, action
    admin = [r for r in records if r["outcome"] == "ok" and r["action"] == "load"]
    assert admin[0]["key"].startswith("admin#0:") and admin[0]["model"] == "extra"
    assert admin[0]["request_id"] and admin[0]["client"] == "127.0.0.1"
    reload = next(r for r in records if r["action"] == "reload" and r["outcome"] == "ok")
    assert reload["diff"]["restarted"] == ["minilm"], reload  # its alias changed
    hup = next(r for r in records if r.get("trigger") == "SIGHUP")
    assert hup["action"] == "reload" and hup["outcome"] == "ok"
    assert hup["diff"]["restarted"] == ["minilm"]
    failed = next(r for r in records if r["action"] == "unload" and r["outcome"] == "failed")
    assert failed["reason"] == "model_not_found" and failed["status"] == 404

    auth = [r for r in records if r["action"] == "authenticate"]
    assert {r["reason"] for r in auth} >= {"missing API key", "unknown API key", "invalid_api_key"}
    assert all(r["key"] is None for r in auth if r["route"] == "/v1/models")
    signature = [r for r in records if r["action"] == "verify_signature"]
    assert [r["reason"] for r in signature] == ["missing"]
    assert signature[0]["key"].startswith("key#2:")

    rate = [r for r in records if r["action"] == "rate_limit"]
    assert refused_rate >= 10
    assert sum(r["count"] for r in rate) == refused_rate
    assert len(rate) <= 3  # at most one a second, plus the counts written at stop

    text = audit.read_text()
    for secret in (USER_KEY, LIMITED_KEY, SIGNER_KEY, ADMIN_KEY, SIGNING_SECRET, TEXT):
        assert secret not in text
    assert "sk-wrong-key-000000000" not in text


# Runs inside the server's mount namespace, beside it: fills the tmpfs, frees it and
# copies the audit log out when the test asks (a file in the control folder), each wait
# bounded so nothing outlives a failed test by more than a minute.
_CONTROL = """
step() { n=0; while [ ! -e "$CTL/$1" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; }
(
  step fill; head -c 1G /dev/zero > "$DIR/filler" 2>/dev/null; touch "$CTL/filled"
  step free; rm -f "$DIR/filler"; touch "$CTL/freed"
  step copy; cp "$DIR/audit.jsonl" "$CTL/audit.jsonl"; touch "$CTL/copied"
) &
"""


def _on_a_tiny_tmpfs(args: list[str], folder: Path, control: Path, log_dir: Path) -> ServerProcess:
    """`embellama serve` in its own mount namespace with `folder` a 256 KiB tmpfs, so the
    disk really fills up."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    script = f'mount -t tmpfs -o size=256k tmpfs "$DIR" && {{ {_CONTROL} }} && exec "$@"'
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                script,
                "sh",
                sys.executable,
                "-m",
                "embellama",
                "serve",
                "--port",
                str(port),
                *args,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DIR": str(folder), "CTL": str(control)},
        )
    return ServerProcess(process, port, log_path)


def _can_mount_tmpfs() -> bool:
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt",
        ],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _ask(control: Path, step: str, done: str) -> None:
    (control / step).touch()
    deadline = time.monotonic() + 30
    while not (control / done).exists():
        assert time.monotonic() < deadline, f"the namespace helper did not {step}"
        time.sleep(0.05)


@pytest.fixture
def full_disk(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Path]]:
    if not _can_mount_tmpfs():
        pytest.skip("this machine cannot mount a tmpfs in a user namespace (unshare)")
    folder, control = tmp_path / "tiny", tmp_path / "control"
    folder.mkdir()
    control.mkdir()
    args = [
        "--model-path",
        str(minilm_gguf),
        "--workers",
        "1",
        "--threads-per-worker",
        "1",
        "--admin-key",
        ADMIN_KEY,
        "--audit-log",
        str(folder / "audit.jsonl"),
    ]
    server = _on_a_tiny_tmpfs(args, folder, control, server_logs)
    try:
        server.wait_ready()
        yield server, control
    finally:
        for step in ("fill", "free", "copy"):
            (control / step).touch()  # let the helper finish
        assert server.stop() == 0, server.log()


@pytest.mark.slow
def test_a_full_disk_stops_admin_changes_but_not_embeddings(
    full_disk: tuple[ServerProcess, Path],
) -> None:
    server, control = full_disk
    _ask(control, "fill", "filled")
    # The log's last page still has room: refused keys fill it (each refusal stands,
    # recorded or not), one record straddling its end is a short write, cut back.
    with httpx.Client(base_url=server.url, headers=_as("sk-wrong-key-000000000")) as client:
        for _ in range(40):
            assert client.post("/admin/drain").status_code == 401

    refused = _admin(server, "/admin/drain")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "audit_unavailable"
    # The drain did not run: the server is ready and embeds.
    assert httpx.get(server.url + "/ready").status_code == 200
    for _ in range(3):
        embedded = httpx.post(server.url + "/v1/embeddings", json={"input": TEXT}, timeout=30)
        assert embedded.status_code == 200
    assert httpx.get(server.url + "/admin/config", headers=ADMIN).status_code == 200  # a read
    assert httpx.post(server.url + "/admin/drain").status_code == 401  # still refused

    _ask(control, "free", "freed")
    assert _admin(server, "/admin/drain").status_code == 200
    assert _admin(server, "/admin/undrain").status_code == 200
    _ask(control, "copy", "copied")
    records = _records(control / "audit.jsonl")  # every line whole
    actions = [(r["action"], r["outcome"]) for r in records]
    refusals = actions.count(("authenticate", "refused"))
    assert 0 < refusals < 40
    assert actions[1 : 1 + refusals] == [("authenticate", "refused")] * refusals
    assert [actions[0], *actions[1 + refusals :]] == [
        ("start", "ok"),
        ("drain", "started"),
        ("drain", "ok"),
        ("undrain", "started"),
        ("undrain", "ok"),
    ], actions  # what could not be written left nothing behind, not even half a line


def test_an_audit_log_that_cannot_be_written_fails_the_start(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    for target, expected in (
        ("/dev/full", "audit log cannot be written"),
        (str(tmp_path / "missing" / "a.jsonl"), "cannot open --audit-log"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "embellama",
                "serve",
                "--port",
                str(free_port()),
                "--model-path",
                str(minilm_gguf),
                "--workers",
                "1",
                "--audit-log",
                target,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
            check=False,
        )
        assert done.returncode != 0
        assert expected in done.stderr, done.stderr
