"""The signing primitives: the documented construction, the header's one accepted
shape, the clock window, and a replay memory that refuses rather than forgets."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest

from embellama.signing import (
    HMACAuth,
    ParsedSignature,
    ReplayMemory,
    SignatureError,
    check_fresh,
    parse_signature,
    sign,
)

SECRET = "unit-signing-secret-000000001"


def test_sign_is_the_documented_hmac() -> None:
    body = b'{"input":"a"}'
    header = sign(SECRET, "POST", "/v1/embeddings", body, now=1_700_000_123.9)
    message = b"1700000123\nPOST\n/v1/embeddings\n" + hashlib.sha256(body).hexdigest().encode()
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert header == f"t=1700000123,v1={expected}"
    parsed = parse_signature(header.encode())
    assert parsed.timestamp == 1_700_000_123 and parsed.digest.hex() == expected


@pytest.mark.parametrize("value", [None, b"", b"t=1", b"v1=" + b"0" * 64, b"t=1,v1=" + b"0" * 63])
def test_anything_but_the_one_shape_is_refused(value: bytes | None) -> None:
    with pytest.raises(SignatureError) as refused:
        parse_signature(value)
    assert refused.value.reason in ("missing", "malformed")


def test_the_window_is_inclusive_to_its_bound() -> None:
    signature = ParsedSignature(1000, b"\0" * 32)
    check_fresh(signature, 300, now=1300)
    check_fresh(signature, 300, now=700)
    for now in (1301, 699):
        with pytest.raises(SignatureError, match="clock"):
            check_fresh(signature, 300, now=now)


def test_the_replay_memory_refuses_when_full_and_frees_expired_entries() -> None:
    memory = ReplayMemory(capacity=3)
    for index in range(3):
        memory.accept(ParsedSignature(1000, bytes([index]) * 32), 300, now=1000)
    with pytest.raises(SignatureError) as full:
        memory.accept(ParsedSignature(1000, rb"\9" * 32), 300, now=1000)
    assert full.value.reason == "memory_full" and full.value.retry_after == 300
    with pytest.raises(SignatureError) as again:
        memory.accept(ParsedSignature(1000, b"\0" * 32), 300, now=1000)
    assert again.value.reason == "replayed"
    memory.accept(ParsedSignature(1400, rb"\9" * 32), 300, now=1400)  # the others expired
    assert len(memory) == 1


def test_hmac_auth_signs_a_repeat_with_a_later_timestamp() -> None:
    auth = HMACAuth(SECRET)
    stamps = []
    for _ in range(3):
        request = httpx.Request("POST", "http://127.0.0.1/v1/embeddings?x=1", content=b"{}")
        signed = next(auth.auth_flow(request))
        stamps.append(int(signed.headers["x-embellama-signature"].split(",")[0][2:]))
    assert stamps[1] == stamps[0] + 1 and stamps[2] == stamps[0] + 2
    header = signed.headers["x-embellama-signature"]
    assert header == sign(SECRET, "POST", "/v1/embeddings?x=1", b"{}", now=stamps[2])
