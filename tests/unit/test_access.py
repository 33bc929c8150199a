"""Keys and rate-limit state: keys refused when empty or short and matched by digest,
reserve-then-settle budgets that count prefixes, per-key limits merged over the global
ones, bounded client memory, reload adoption, and admin decided on the routed path."""

from __future__ import annotations

import time
from typing import Any

import pytest

from embellama.errors import ConfigError
from embellama.server import security
from embellama.server.errors import ApiError
from embellama.server.security import AccessControl, RateLimits, most_tokens, routed_path

KEY = "sk-unit-key-00000000001"
OTHER = "sk-unit-key-00000000002"


def scope(
    path: str, root_path: str = "", client: str = "10.0.0.1", authorization: bytes | None = None
) -> dict[str, Any]:
    headers = [] if authorization is None else [(b"authorization", authorization)]
    return {
        "type": "http",
        "path": path,
        "root_path": root_path,
        "client": (client, 1),
        "headers": headers,
    }


@pytest.mark.parametrize(
    "bad", ["", "   ", "\t", "sk-short", "sk-with space-00000", "sk-ключ-0000000000"]
)
def test_an_empty_blank_short_or_unsendable_key_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        AccessControl(keys=[KEY, bad])
    assert bad.strip() == "" or bad not in str(refused.value)  # never quoted
    with pytest.raises(ConfigError):
        AccessControl(admin_keys=[bad])


@pytest.mark.parametrize(
    "authorization",
    [None, b"", b"Bearer", b"Bearer ", b"Basic " + KEY.encode(), KEY.encode(), b"Bearer sk"],
)
def test_a_missing_or_malformed_authorization_never_matches(authorization: bytes | None) -> None:
    control = AccessControl(keys=[KEY], admin_keys=[OTHER])
    assert control.identify(scope("/v1/embeddings", authorization=authorization)) is None
    assert not control.is_admin(scope("/admin/config", authorization=authorization))


def test_only_the_whole_key_matches_and_each_key_is_told_apart() -> None:
    control = AccessControl(keys=[KEY, OTHER])
    for token, index in [(KEY, 0), (OTHER, 1), (f"  {KEY}  ", 0)]:
        identity = control.identify(scope("/", authorization=b"Bearer " + token.encode()))
        assert identity is not None and identity.startswith(f"key#{index}:")
    for near in (KEY[:-1], KEY + "0", KEY.upper(), KEY[:-1] + "2" * 2):
        assert control.identify(scope("/", authorization=f"Bearer {near}".encode())) is None


def test_info_describes_the_callers_own_key_only() -> None:
    control = AccessControl(keys=[KEY, OTHER], limits=RateLimits(requests_per_second=3))
    identity = control.identify(scope("/info", authorization=f"Bearer {OTHER}".encode()))
    assert control.describe(identity) == {
        "api_keys": ["…0002"],
        "keys_required": True,
        "requests_per_second": 3,
        "tokens_per_minute": None,
    }
    assert AccessControl().describe("addr:10.0.0.1")["api_keys"] == []


def test_a_keys_own_limits_override_the_global_ones_field_by_field() -> None:
    control = AccessControl(
        keys=[KEY, OTHER],
        limits=RateLimits(requests_per_second=5, tokens_per_minute=1000),
        key_limits={KEY: RateLimits(requests_per_second=50)},
    )
    own = control.describe(control.identify(scope("/", authorization=f"Bearer {KEY}".encode())))
    assert (own["requests_per_second"], own["tokens_per_minute"]) == (50, 1000)
    identity = control.identify(scope("/", authorization=f"Bearer {KEY}".encode()))
    assert identity is not None
    control.admit(identity)
    control.reserve_tokens(identity, 1000)
    with pytest.raises(ApiError):  # the global 1000 tokens a minute still bind this key
        control.reserve_tokens(identity, 1)


def test_the_reservation_counts_the_prefix_in_front_of_every_text() -> None:
    instruction = "Instruct: find passages answering the question\nQuery:"
    assert most_tokens(["x", "y"]) == 2 * 3
    assert most_tokens(["x", "y"], instruction) == 2 * (3 + len(instruction))
    assert most_tokens([[101, 7592, 102]], instruction) == 5  # ids never get a prefix
    assert most_tokens(["é"], "Ω") == 2 + 2 + 2  # bytes, not characters


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


def test_a_token_debt_paid_back_by_waiting_admits_again() -> None:
    control = AccessControl(limits=RateLimits(tokens_per_minute=6000))  # 100 a second
    identity = "addr:10.0.0.8"
    control.admit(identity)
    control.reserve_tokens(identity, 6000).settle(6030)  # 30 tokens of debt
    with pytest.raises(ApiError):
        control.admit(identity)
    time.sleep(0.6)  # 60 tokens refilled: the debt is paid, whatever the stale level says
    control.admit(identity)


def test_an_estimate_is_computed_only_for_a_client_with_a_token_budget() -> None:
    calls: list[int] = []

    def estimate() -> int:
        calls.append(1)
        return 10

    open_server = AccessControl()
    open_server.reserve_tokens(open_server.identify(scope("/v1/embeddings")), estimate)
    assert calls == []
    limited = AccessControl(limits=RateLimits(tokens_per_minute=100))
    limited.admit("addr:10.0.0.7")
    assert limited.reserve_tokens("addr:10.0.0.7", estimate).reserved == 10
    assert calls == [1]


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
        # uvicorn glues `GET admin/config` to a root "/" and `GET in/config` to "/adm":
        # Starlette routes these whole, so they must be judged whole.
        ("/admin/config", "/", "/admin/config"),
        ("/admin/config", "/adm", "/admin/config"),
        ("/apiadmin/config", "/api", "/apiadmin/config"),
    ],
)
def test_routed_path(path: str, root: str, routed: str) -> None:
    assert routed_path(scope(path, root)) == routed
