"""The audit log (`--audit-log`): one JSON line per admin action, per refused key or
signature, per rate-limit refusal (at most one a second per client, with a count), and
at start and stop. Each record is written and flushed (one `write(2)` on an O_APPEND
file, so no partial line survives a failure) before the response that it records is
sent; when it cannot be written, admin actions answer 503 instead of running
unrecorded. Records hold ids, addresses and masked keys, never a secret, a full key or
an input text. Rotation by size happens only between records.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.types import Scope

from embellama.errors import AuditUnavailableError, ConfigError

__all__ = ["AuditLog", "action_of", "record", "reload_diff", "snapshot"]

_log = logging.getLogger("embellama.server")
# Clients whose suppressed rate-limit refusals are counted at once; beyond, the least
# recently refused one's count is written out early.
_MAX_COUNTED_CLIENTS = 10_000
# Refusals of who the caller is (a 403 for a model path outside --models-dir is an
# admin action that failed, recorded as such by the admin guard, not one of these).
_AUTH_CODES = frozenset({"invalid_api_key", "admin_disabled", "invalid_signature"})
_MAX_ROUTE = 256  # characters of a path kept in a record: a path is the client's text


class _Sink(Protocol):
    def write(self, line: bytes) -> None: ...
    def close(self) -> None: ...


class _StreamSink:
    """`--audit-log -`: standard error, one line per write, flushed."""

    def write(self, line: bytes) -> None:
        sys.stderr.write(line.decode())
        sys.stderr.flush()

    def close(self) -> None:
        pass


class _FileSink:
    """An append-only file, rotated to `path.1` ... `path.N` before a record that would
    take it past `max_bytes` (0: never); a record is never split between two files."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, line: bytes) -> None:
        size = os.fstat(self._fd).st_size
        if self.max_bytes and size and size + len(line) > self.max_bytes:
            self._rotate()
            size = 0
        try:
            written = os.write(self._fd, line)
        except OSError:
            self._cut(size)
            raise
        if written != len(line):  # a short write: the disk filled in the middle
            self._cut(size)
            raise OSError(errno.ENOSPC, "No space left on device (short write)")

    def _cut(self, size: int) -> None:
        """Drop a torn last line: a half record would be a lie in the log."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, size)

    def _rotate(self) -> None:
        """Shift the backups up by one (the oldest beyond `backups` goes) and start a new
        file; the old one stays open until the new one is, so a failure loses nothing."""
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        fresh = self._open()
        os.close(self._fd)
        self._fd = fresh

    def close(self) -> None:
        os.close(self._fd)


class AuditLog:
    """Where records go; `disabled()` keeps none (and never fails)."""

    def __init__(self, sink: _Sink | None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        # client -> (when its last rate-limit record was written, refusals since, and
        # the last refused request's fields)
        self._refusals: OrderedDict[str, tuple[float, int, dict[str, Any]]] = OrderedDict()

    @classmethod
    def disabled(cls) -> AuditLog:
        return cls(None)

    @classmethod
    def open(cls, target: str | None, max_bytes: int = 0, backups: int = 5) -> AuditLog:
        """`target` a path, "-" (stderr) or None (off); an unopenable path fails the start."""
        if target is None:
            return cls.disabled()
        if target == "-":
            return cls(_StreamSink())
        try:
            return cls(_FileSink(Path(target), max_bytes, backups))
        except OSError as exc:
            raise ConfigError(f"cannot open --audit-log {target}: {exc.strerror}") from None

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    def write(self, entry: Mapping[str, Any]) -> None:
        """One record, on disk (or stderr) when this returns; AuditUnavailableError if not."""
        if self._sink is None:
            return
        line = orjson.dumps({"time": _utc_now(), **entry}, default=str) + b"\n"
        with self._lock:
            try:
                self._sink.write(line)
            except OSError as exc:
                _log.error("the audit log cannot be written: %s", exc.strerror or exc)
                raise AuditUnavailableError(
                    "the audit log cannot be written; admin actions are refused until it can"
                ) from None

    def event(
        self,
        scope: Scope | None,
        action: str,
        outcome: str,
        reason: str | None = None,
        **details: object,
    ) -> None:
        self.write(
            {**_who(scope), "action": action, "outcome": outcome, "reason": reason, **details}
        )

    def refused(self, scope: Scope, status: int, code: str | None) -> None:
        """A refused request, if it is one the log keeps: a key or signature refused, or
        a rate limit. The request is refused already: a failed write is logged only."""
        try:
            if code in _AUTH_CODES:
                reason = scope.get("state", {}).get("refusal") or code
                action = "verify_signature" if code == "invalid_signature" else "authenticate"
                self.event(scope, action, "refused", reason, status=status)
            elif code == "signature_memory_full":
                self.event(scope, "verify_signature", "refused", code, status=status)
            elif status == 429 and code == "rate_limit_exceeded":
                self._rate_limited(scope)
        except AuditUnavailableError:
            pass  # logged by write; the refusal stands

    def _rate_limited(self, scope: Scope) -> None:
        """At most one record per client per second; it counts the refusals since the
        last one (this one included). Counts still pending are written at stop."""
        if self._sink is None:
            return
        who = _who(scope)
        client = str(who["key"] or who["client"])
        now = time.monotonic()
        last, pending, _ = self._refusals.pop(client, (-1.0, 0, who))
        if last >= 0 and now - last < 1.0:
            self._refusals[client] = (last, pending + 1, who)
            return
        self._refusals[client] = (now, 0, who)
        while len(self._refusals) > _MAX_COUNTED_CLIENTS:
            _, (_, count, seen) = self._refusals.popitem(last=False)
            self._write_refusals(seen, count)
        self._write_refusals(who, pending + 1)

    def _write_refusals(self, who: Mapping[str, Any], count: int) -> None:
        """`who` is the last refused request's: its id, address, key and route."""
        if count:
            entry = {**who, "action": "rate_limit", "outcome": "refused"}
            self.write({**entry, "reason": "rate_limit_exceeded", "count": count})

    def close(self, models: list[str] | None = None) -> None:
        """Write the counts still pending and the stop record, and close the file."""
        if self._sink is None:
            return
        try:
            for _, count, who in self._refusals.values():
                self._write_refusals(who, count)
            self.event(None, "stop", "ok", models=models or [])
        except AuditUnavailableError:
            pass  # logged; stopping goes on
        finally:
            self._refusals.clear()
            self._sink.close()
            self._sink = None


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _who(scope: Scope | None) -> dict[str, Any]:
    """Request id, client address, masked key id, method and route of a request."""
    if scope is None:
        return {"request_id": None, "client": None, "key": None, "method": None, "route": None}
    state = scope.get("state", {})
    identity = state.get("client")
    peer = scope.get("client")
    return {
        "request_id": state.get("request_id"),
        "client": peer[0] if peer else None,
        # "key#0:…abcd" / "admin#0:…abcd"; without keys the identity is the address
        "key": identity if isinstance(identity, str) and "#" in identity else None,
        "method": scope.get("method"),
        "route": str(scope.get("path", ""))[:_MAX_ROUTE],
    }


def action_of(path: str) -> str:
    """An admin path's action: /admin/reload -> reload, /admin/cache/clear ->
    cache_clear, /admin/models/{name}/load -> load."""
    rest = path.removeprefix("/admin").strip("/")
    if rest.startswith("models/") and rest.count("/") >= 2:
        return rest.rsplit("/", 1)[1]
    return rest.replace("/", "_")[:64] or "admin"


def record(request: Request, action: str, outcome: str = "ok", **details: object) -> None:
    """The one call a route makes to audit what it did, before it answers: writes the
    record now (AuditUnavailableError, a 503, if it cannot), and tells the admin guard
    this request's outcome is recorded."""
    audit: AuditLog = request.app.state.embellama.audit
    audit.event(request.scope, action, outcome, None, **details)
    request.scope.setdefault("state", {})["audited"] = True


def snapshot(services: list[Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a reload may change: the served models (by identity) and the settings."""
    return {"models": {s.name: id(s) for s in services}, "settings": dict(settings)}


def reload_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Models added, removed and restarted; settings changed (already masked)."""
    old, new = before["models"], after["models"]
    settings = {
        name: {"from": before["settings"].get(name), "to": value}
        for name, value in after["settings"].items()
        if before["settings"].get(name) != value
    }
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "restarted": sorted(n for n in set(new) & set(old) if new[n] != old[n]),
        "settings": settings,
    }


Recorder = Callable[[], AuditLog]
