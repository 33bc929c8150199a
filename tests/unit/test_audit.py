"""The audit log's file: records rotated by size between records (none lost, none split,
none beyond the size but a record alone), backups kept to their count, a full device
refused with AuditUnavailableError, and rate-limit refusals coalesced per second."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from embellama.errors import AuditUnavailableError
from embellama.server.audit import AuditLog, action_of


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for f in folder.iterdir() for line in f.read_bytes().splitlines()]


def test_rotation_loses_and_splits_nothing_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(str(path), max_bytes=2000, backups=1000)

    def writer(number: int) -> None:
        for index in range(250):
            log.event(None, "test", "ok", writer=number, index=index)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    files = list(tmp_path.iterdir())
    assert len(files) > 10
    assert all(f.stat().st_size <= 2000 for f in files)
    records = [r for r in _lines(tmp_path) if r["action"] == "test"]
    assert sorted((r["writer"], r["index"]) for r in records) == [
        (n, i) for n in range(4) for i in range(250)
    ]


def test_only_the_configured_backups_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(str(path), max_bytes=300, backups=2)
    for index in range(50):
        log.event(None, "test", "ok", index=index)
    log.close()
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
    ]
    newest = [r.get("index") for r in _lines(tmp_path)]
    assert 49 in newest and 0 not in newest


def test_a_full_device_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    log = AuditLog.open("/dev/full")
    with pytest.raises(AuditUnavailableError):
        log.event(None, "drain", "started")
    log.close()  # stopping goes on


def test_rate_limit_refusals_are_one_record_a_second_with_a_count(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(str(path))
    scope = {
        "type": "http",
        "path": "/v1/embeddings",
        "method": "POST",
        "client": ("10.0.0.9", 1),
        "state": {"client": "key#0:…abcd", "request_id": "r1"},
    }
    for _ in range(25):
        log.refused(scope, 429, "rate_limit_exceeded")
    log.close()
    rate = [r for r in _lines(tmp_path) if r["action"] == "rate_limit"]
    assert [r["count"] for r in rate] == [1, 24]  # the first at once, the rest at stop
    assert all(r["key"] == "key#0:…abcd" and r["client"] == "10.0.0.9" for r in rate)


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/admin/reload", "reload"),
        ("/admin/cache/clear", "cache_clear"),
        ("/admin/models/m/load", "load"),
        ("/admin/models/m/weights", "weights"),
        ("/admin/drain", "drain"),
    ],
)
def test_admin_paths_name_their_action(path: str, action: str) -> None:
    assert action_of(path) == action


def test_only_refusals_of_the_caller_are_recorded_as_such(tmp_path: Path) -> None:
    log = AuditLog.open(str(tmp_path / "audit.jsonl"))
    scope = {
        "type": "http",
        "path": "/admin/models/m/load",
        "method": "POST",
        "client": ("10.0.0.9", 1),
        "state": {"refusal": "unknown API key"},
    }
    log.refused(scope, 403, "path_not_allowed")  # an admin action that failed, not auth
    log.refused(scope, 429, "queue_full")  # overload, not a rate limit
    log.refused(scope, 401, "invalid_api_key")
    log.close()
    kept = [r for r in _lines(tmp_path) if r["action"] != "stop"]
    assert [(r["action"], r["reason"]) for r in kept] == [("authenticate", "unknown API key")]
