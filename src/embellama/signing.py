"""Signed requests: the HMAC-SHA256 a client puts in `x-embellama-signature`, and what a
server needs to check it (the header's parts, the constant-time comparison, a bounded
memory of the signatures already accepted). Knows nothing of HTTP servers.

    x-embellama-signature: t=<unix seconds>,v1=<hex>
    v1 = HMAC-SHA256(secret, "<t>\\n<METHOD>\\n<path>\\n<hex sha256 of the body>")

`<path>` is the request target as sent: its percent-encoded path, with `?query` when it
has one. A client signs with `sign(...)`, or lets httpx do it (`HMACAuth`).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass

import httpx

__all__ = [
    "DEFAULT_REPLAY_CAPACITY",
    "DEFAULT_WINDOW_SECONDS",
    "SIGNATURE_HEADER",
    "HMACAuth",
    "ParsedSignature",
    "ReplayMemory",
    "SignatureError",
    "check_digest",
    "check_fresh",
    "expected_digest",
    "parse_signature",
    "sign",
]

SIGNATURE_HEADER = "x-embellama-signature"
DEFAULT_WINDOW_SECONDS = 300.0
# Signatures remembered at once: ~200 bytes each, so 100k are ~20 MB, and they cover
# 166 signed requests a second sustained over a 600 s (±300 s) window.
DEFAULT_REPLAY_CAPACITY = 100_000
# Requests an HMACAuth remembers to sign a repeat with a later timestamp.
_REMEMBERED_REQUESTS = 4096

# Exactly `t=<1-12 digits>,v1=<64 hex>`: anything else (spaces, other schemes, a second
# v1) is malformed, so the parser never has to choose between two readings.
_HEADER = re.compile(rb"t=(?P<t>[0-9]{1,12}),v1=(?P<v1>[0-9a-fA-F]{64})")


class SignatureError(Exception):
    """Why a signature is refused: `reason` is one of missing, malformed, stale,
    replayed, mismatch, memory_full. Never says what the expected value was."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    digest: bytes  # the 32 bytes of v1


def _canonical(timestamp: int, method: str, target: bytes, body_sha256: str) -> bytes:
    return b"\n".join(
        (str(timestamp).encode(), method.upper().encode(), target, body_sha256.encode())
    )


def expected_digest(
    secret: bytes, timestamp: int, method: str, target: bytes, body_sha256: str
) -> bytes:
    """The v1 value, as bytes, for a request whose body hashes to `body_sha256` (hex)."""
    message = _canonical(timestamp, method, target, body_sha256)
    return hmac.new(secret, message, hashlib.sha256).digest()


def sign(
    secret: str | bytes, method: str, path: str, body: bytes = b"", now: float | None = None
) -> str:
    """The `x-embellama-signature` value for one request: `path` as sent (with its
    `?query`, if any), `body` the exact bytes sent; `now` defaults to the clock."""
    key = secret.encode() if isinstance(secret, str) else secret
    timestamp = int(time.time() if now is None else now)
    body_hash = hashlib.sha256(body).hexdigest()
    digest = expected_digest(key, timestamp, method, path.encode(), body_hash)
    return f"t={timestamp},v1={digest.hex()}"


class HMACAuth(httpx.Auth):
    """Signs every request an `httpx.Client` sends, so any SDK built on httpx (openai's)
    signs: `OpenAI(http_client=httpx.Client(auth=HMACAuth(secret)))`. The SDK's own
    `Authorization` header is left as it set it.

    The same request signed twice in one second would carry the same signature, and the
    server accepts each signature once: a retry, or the same query sent twice, would be
    refused as a replay. So a repeat is signed one second later than the last signature
    of the same request (still well inside the window).
    """

    requires_request_body = True

    def __init__(self, secret: str | bytes) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._last: OrderedDict[bytes, int] = OrderedDict()  # request's hash -> last t
        self._lock = threading.Lock()  # one client may send from several threads

    def _timestamp(self, request: bytes) -> int:
        now = int(time.time())
        with self._lock:
            last = self._last.pop(request, None)
            stamp = now if last is None or last < now else last + 1
            self._last[request] = stamp
            while len(self._last) > _REMEMBERED_REQUESTS:
                self._last.popitem(last=False)
        return stamp

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode("ascii")  # path and ?query, as sent
        body = request.content
        which = hashlib.sha256(b"\n".join((request.method.encode(), target.encode(), body)))
        stamp = self._timestamp(which.digest())
        request.headers[SIGNATURE_HEADER] = sign(
            self._secret, request.method, target, body, now=stamp
        )
        yield request


def parse_signature(value: bytes | None) -> ParsedSignature:
    """The header's parts, or SignatureError("missing" / "malformed")."""
    if value is None:
        raise SignatureError("missing", f"the request has no {SIGNATURE_HEADER} header")
    match = _HEADER.fullmatch(value.strip())
    if match is None:
        raise SignatureError(
            "malformed", f"the {SIGNATURE_HEADER} header is not 't=<unix seconds>,v1=<hex>'"
        )
    return ParsedSignature(int(match["t"]), bytes.fromhex(match["v1"].decode()))


def check_fresh(parsed: ParsedSignature, window: float, now: float | None = None) -> None:
    """Refuse a timestamp more than `window` seconds from the server's clock."""
    now = time.time() if now is None else now
    if abs(now - parsed.timestamp) > window:
        raise SignatureError(
            "stale",
            f"the signature's timestamp is more than {window:g} s from the server's clock "
            "(sign with the current time; check the client's clock)",
        )


def check_digest(parsed: ParsedSignature, expected: bytes) -> None:
    if not hmac.compare_digest(parsed.digest, expected):
        raise SignatureError("mismatch", "the signature does not match the request")


class ReplayMemory:
    """The signatures accepted within their window, each remembered until its timestamp
    leaves the window (then it would be stale anyway). At `capacity`, new signatures are
    refused until one expires: forgetting one early would let it be replayed."""

    def __init__(self, capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"the replay memory needs room for one signature, got {capacity}")
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []  # a heap: soonest to expire first

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, digest: bytes) -> bool:
        return digest in self._seen

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiry)[1])

    def accept(self, parsed: ParsedSignature, window: float, now: float | None = None) -> None:
        """Remember `parsed` once, or refuse it: seen before (replayed), or no room."""
        now = time.time() if now is None else now
        self._forget_expired(now)
        if parsed.digest in self._seen:
            raise SignatureError("replayed", "this signature was already used")
        if len(self._seen) >= self.capacity:
            wait = max(1.0, self._expiry[0][0] - now)
            raise SignatureError(
                "memory_full",
                "the server remembers as many signatures as it can; retry when one expires",
                retry_after=wait,
            )
        self._seen.add(parsed.digest)
        heapq.heappush(self._expiry, (parsed.timestamp + window, parsed.digest))

    def adopt(self, previous: ReplayMemory) -> ReplayMemory:
        """Keep what `previous` remembered (a reload must not reopen a replay window);
        past a smaller capacity, the new signatures wait as at a full memory."""
        self._seen |= previous._seen
        self._expiry = [*previous._expiry, *self._expiry]
        heapq.heapify(self._expiry)
        return self
