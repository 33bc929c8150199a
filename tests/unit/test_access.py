"""Rate-limit state: reserve-then-settle budgets, bounded client memory, reload adoption,
and admin decided on the routed path."""

from __future__ import annotations

from typing import Any

import pytest

from embellama.server import security
from embellama.server.errors import ApiError
from embellama.server.security import AccessControl, RateLimits, routed_path


def scope(path: str, root_path: str = "", client: str = "10.0.0.1") -> dict[str, Any]:
    return {"type": "http", "path": path, "root_path": root_path, "client": (client, 1)}


def test_concurrent_requests_cannot_overdraw_tokens_per_minute() -> None:
    control = AccessControl(limits=RateLimits(tokens_per_minute=1000))
    identity = control.identify(scope("/v1/embeddings"))
    assert identity is not None
    control.admit(identity)
    first = control.reserve_tokens(identity, 600)
    control.admit(identity)
    with pytest.raises(ApiError) as refused:  # 600 + 600 > 1000, both still running
        control.reserve_tokens(identity, 600)
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    first.settle(100)  # it used far less than its bound: the rest comes back
    control.reserve_tokens(identity, 600)


def test_a_failed_request_costs_nothing() -> None:
    control = AccessControl(limits=RateLimits(tokens_per_minute=100))
    identity = "addr:10.0.0.9"
    control.admit(identity)
    control.reserve_tokens(identity, 100).settle(0)
    control.reserve_tokens(identity, 100)


def test_no_state_without_limits_and_bounded_state_with_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unlimited = AccessControl()
    for n in range(100):
        unlimited.admit(f"addr:10.0.{n}.1")
    assert unlimited.tracked_clients == 0
    monkeypatch.setattr(security, "MAX_TRACKED_CLIENTS", 50)
    limited = AccessControl(limits=RateLimits(requests_per_second=5))
    for n in range(100):
        limited.admit(f"addr:10.0.{n}.1")
    assert limited.tracked_clients == 50


def test_reload_keeps_buckets_whose_limits_did_not_change() -> None:
    old = AccessControl(limits=RateLimits(requests_per_second=1))
    old.admit("addr:a")
    with pytest.raises(ApiError):
        old.admit("addr:a")
    same = AccessControl(limits=RateLimits(requests_per_second=1)).adopt(old)
    with pytest.raises(ApiError):
        same.admit("addr:a")  # a reload is not a way to reset a budget
    looser = AccessControl(limits=RateLimits(requests_per_second=100)).adopt(old)
    looser.admit("addr:a")


@pytest.mark.parametrize(
    ("path", "root", "routed"),
    [
        ("/admin/reload", "", "/admin/reload"),
        ("/api/admin/reload", "/api", "/admin/reload"),
        ("/api", "/api", "/"),
        ("/admin", "/api", "/admin"),
    ],
)
def test_routed_path(path: str, root: str, routed: str) -> None:
    assert routed_path(scope(path, root)) == routed
