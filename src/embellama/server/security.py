"""API keys and per-client rate limits, as one ASGI middleware in front of the routes,
and a guard of its own on the admin routes.

A key must be at least `MIN_KEY_LENGTH` visible ASCII characters: an empty one (a
`--admin-key "$UNSET"`) would match a request without `Authorization`. Keys are kept and
compared as SHA-256 digests, in constant time, against every configured key (no early
exit), so neither timing nor length says anything about a guess. Logs and /info see
only a key's masked form, and /info only the caller's own. Rate limits are token
buckets per key (per client address when no keys are configured): requests per second,
checked before the request runs, and tokens per minute, reserved from the most the
request can cost (its texts, plus the prefix or instruction put in front of each) before
the work is queued and settled to the real count after, so concurrent requests cannot
overdraw a budget. A key's own limits override the global ones field by field. Client
state exists only where a limit is on, and the least recently seen clients are evicted
beyond `MAX_TRACKED_CLIENTS`. Paths are judged as routed (`root_path` removed only on a
`/` boundary, as Starlette's router does).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embellama import signing
from embellama.errors import AuditUnavailableError, ConfigError
from embellama.server.audit import AuditLog, action_of
from embellama.server.body import read_body
from embellama.server.errors import ApiError, to_api_error

__all__ = [
    "MIN_KEY_LENGTH",
    "AccessControl",
    "AdminGuard",
    "RateLimits",
    "SecurityMiddleware",
    "SigningPolicy",
    "TokenBucket",
    "TokenReservation",
    "key_problem",
    "mask_key",
    "most_tokens",
    "routed_path",
]

Rejecter = Callable[[ApiError], ASGIApp]

# Who did what through the admin API: one INFO line per call, the caller's key masked.
_audit = logging.getLogger("embellama.audit")

PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/docs/static/",)
# Per-client buckets kept at most; a client evicted comes back with full buckets, which
# errs on the side of serving it. 10k clients are a few MB.
MAX_TRACKED_CLIENTS = 10_000
# 16 characters of a random alphabet are ~95 bits; shorter keys are typos or placeholders.
MIN_KEY_LENGTH = 16


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an API or admin key, or None. Never quotes the key."""
    if not key.strip():
        return "is empty"
    if not all("!" <= char <= "~" for char in key):
        # A header cannot carry it reliably, and `Bearer  key ` is stripped to `key`.
        return "contains a space or a character outside visible ASCII"
    if len(key) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    return None


def routed_path(scope: Scope) -> str:
    """The path the router matches: without the `root_path` a proxy or mount added.

    Only on a `/` boundary, as Starlette's router strips it: with root "/" or "/adm",
    uvicorn turns `GET admin/config` or `GET in/config` into "/admin/config", which the
    router matches whole; cutting the root there would hide the admin path.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest.startswith("/") else path


def mask_key(key: str) -> str:
    """What logs and /info may show of a key: its last four characters at most."""
    return "…" + key[-4:] if len(key) >= 12 else "…"


@dataclass
class TokenBucket:
    """`capacity` units, refilled at `rate` per second; may go negative (debt)."""

    capacity: float
    rate: float
    level: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = self.capacity

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def try_take(self, amount: float, now: float) -> bool:
        self._refill(now)
        if self.level < amount:
            return False
        self.level -= amount
        return True

    def charge(self, amount: float, now: float) -> None:
        """Take `amount` (negative: give back), even into debt."""
        self._refill(now)
        self.level = min(self.capacity, self.level - amount)

    def has_credit(self, now: float) -> bool:
        """Above zero once refilled to `now`: a debt paid back by waiting admits again."""
        self._refill(now)
        return self.level > 0

    def seconds_until(self, amount: float, now: float) -> float:
        self._refill(now)
        return max(0.0, (amount - self.level) / self.rate)


@dataclass(frozen=True)
class RateLimits:
    requests_per_second: float | None = None
    tokens_per_minute: float | None = None

    @property
    def enabled(self) -> bool:
        return self.requests_per_second is not None or self.tokens_per_minute is not None

    def over(self, base: RateLimits) -> RateLimits:
        """These limits where set, `base`'s elsewhere: a key that sets only a request
        rate keeps the global tokens per minute."""
        return RateLimits(
            base.requests_per_second
            if self.requests_per_second is None
            else self.requests_per_second,
            base.tokens_per_minute if self.tokens_per_minute is None else self.tokens_per_minute,
        )


@dataclass(frozen=True)
class SigningPolicy:
    """Who must sign, with which secret. A key's own secret (`[[keys]] signing_secret`)
    checks its requests; other requests (admin, no keys) use the server-wide one. A
    signature that is sent is checked wherever a secret applies; `required` (server-wide)
    or a key in `required_keys` refuses a request without one."""

    secret: str | None = None
    required: bool = False
    key_secrets: Mapping[str, str] = field(default_factory=dict)
    required_keys: frozenset[str] = frozenset()
    window: float = signing.DEFAULT_WINDOW_SECONDS
    capacity: int = signing.DEFAULT_REPLAY_CAPACITY

    def __post_init__(self) -> None:
        for secret in (self.secret, *self.key_secrets.values()):
            problem = None if secret is None else key_problem(secret)
            if problem is not None:  # the config edge names the source; this is the floor
                raise ConfigError(f"a signing secret {problem}")
        if self.required and self.secret is None:
            raise ConfigError("signed requests are required but no signing secret is set")
        orphans = self.required_keys - set(self.key_secrets)
        if orphans and self.secret is None:
            raise ConfigError("a key requires signatures but has no signing_secret")


class _Client:
    """One client's buckets; `None` where that limit is off."""

    def __init__(self, limits: RateLimits) -> None:
        rps, tpm = limits.requests_per_second, limits.tokens_per_minute
        self.limits = limits
        self.requests = TokenBucket(max(1.0, rps), rps) if rps else None
        self.tokens = TokenBucket(tpm, tpm / 60) if tpm else None


@dataclass
class TokenReservation:
    """Tokens set aside for one request; `settle` replaces them with what it really used."""

    bucket: TokenBucket | None
    reserved: float

    def settle(self, used: int) -> None:
        if self.bucket is not None:
            self.bucket.charge(used - self.reserved, time.monotonic())
            self.reserved = used


class AccessControl:
    """Who may call, and how often: the keys and every client's buckets."""

    def __init__(
        self,
        keys: Iterable[str] = (),
        limits: RateLimits | None = None,
        *,
        key_limits: Mapping[str, RateLimits] | None = None,
        admin_keys: Iterable[str] = (),
        public_metrics: bool = True,
        signing: SigningPolicy | None = None,
    ) -> None:
        keys, admin_keys = list(keys), list(admin_keys)
        self.signing = signing or SigningPolicy()
        self.replay = _replay_memory(self.signing)
        policy = self.signing
        self._secrets = {
            i: (policy.key_secrets.get(key) or policy.secret or "").encode()
            for i, key in enumerate(keys)
        }
        self._must_sign = {i for i, key in enumerate(keys) if key in policy.required_keys}
        for key in (*keys, *admin_keys):
            problem = key_problem(key)
            if problem is not None:  # the config edge names the source; this is the floor
                raise ConfigError(f"a key {problem}")
        self._keys = [_digest(key.encode()) for key in keys]
        self._admin_keys = [_digest(key.encode()) for key in admin_keys]
        self.masked_keys = [mask_key(key) for key in keys]
        self._admin_masked = [mask_key(key) for key in admin_keys]
        self.limits = limits or RateLimits()
        own = key_limits or {}
        self._key_limits = {
            index: own[key].over(self.limits) if key in own else self.limits
            for index, key in enumerate(keys)
        }
        self.public_paths = PUBLIC_PATHS | ({"/metrics"} if public_metrics else set())
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(PUBLIC_PREFIXES)

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    @property
    def admin_enabled(self) -> bool:
        return bool(self._admin_keys)

    def identify(self, scope: Scope) -> str | None:
        """A log-safe identity: the masked key that matched, or the client address."""
        if not self._keys:
            client = scope.get("client")
            return f"addr:{client[0]}" if client else "addr:unknown"
        matched = _match(_bearer(scope), self._keys)
        return None if matched is None else f"key#{matched}:{self.masked_keys[matched]}"

    def is_admin(self, scope: Scope) -> bool:
        return self.admin_identity(scope) is not None

    def admin_identity(self, scope: Scope) -> str | None:
        """The admin key that matched, masked and numbered like `identify`'s, or None."""
        matched = _match(_bearer(scope), self._admin_keys)
        return None if matched is None else f"admin#{matched}:{self._admin_masked[matched]}"

    def describe(self, identity: str | None) -> dict[str, object]:
        """What /info says about access to this caller: its own masked key, never the
        other tenants', and the limits that apply to it."""
        limits = self._limits_for(identity) if identity else self.limits
        own = [identity.split(":", 1)[1]] if identity and identity.startswith("key#") else []
        described: dict[str, object] = {
            "api_keys": own,
            "keys_required": self.keys_required,
            "requests_per_second": limits.requests_per_second,
            "tokens_per_minute": limits.tokens_per_minute,
        }
        if self.signing.secret or self.signing.key_secrets:
            secret, required = self.signing_for(identity)
            described["signatures"] = {
                "required": required,
                "checked": secret is not None,
                "window_seconds": self.signing.window,
                "replay_memory": {"size": len(self.replay), "capacity": self.replay.capacity},
            }
        return described

    def signing_for(self, identity: str | None) -> tuple[bytes | None, bool]:
        """The secret that checks this caller's signatures (None: nothing to check with)
        and whether it must sign."""
        policy = self.signing
        index = _key_index(identity)
        if index is None:
            secret = policy.secret.encode() if policy.secret else b""
            must = policy.required
        else:
            secret, must = (
                self._secrets.get(index, b""),
                policy.required or index in self._must_sign,
            )
        return (secret or None), must

    def _client(self, identity: str) -> _Client | None:
        client = self._clients.get(identity)
        if client is not None:
            self._clients.move_to_end(identity)
            return client
        limits = self._limits_for(identity)
        if not limits.enabled:
            return None
        client = self._clients[identity] = _Client(limits)
        while len(self._clients) > MAX_TRACKED_CLIENTS:
            self._clients.popitem(last=False)
        return client

    @property
    def tracked_clients(self) -> int:
        return len(self._clients)

    def adopt(self, previous: AccessControl) -> AccessControl:
        """Keep the buckets of clients whose limits a reload left unchanged, and the
        signatures already accepted (a reload must not let them be replayed)."""
        self.replay.adopt(previous.replay)
        for identity, client in previous._clients.items():
            if self._limits_for(identity) == client.limits:
                self._clients[identity] = client
        return self

    def admit(self, identity: str) -> list[tuple[bytes, bytes]]:
        """Take one request from the client's buckets; raise 429 if it has none left."""
        client = self._client(identity)
        if client is None:
            return []
        now = time.monotonic()
        headers: list[tuple[bytes, bytes]] = []
        for name, bucket in (("requests", client.requests), ("tokens", client.tokens)):
            if bucket is None:
                continue
            allowed = bucket.try_take(1.0, now) if name == "requests" else bucket.has_credit(now)
            if not allowed:
                raise _rate_limited(name, bucket, 1.0, now)
            headers += [
                (k.encode(), v.encode()) for k, v in _limit_headers(name, bucket, now).items()
            ]
        return headers

    def _limits_for(self, identity: str) -> RateLimits:
        if identity.startswith("key#"):
            index = int(identity[4:].split(":", 1)[0])
            return self._key_limits.get(index, self.limits)
        return self.limits

    def reserve_tokens(
        self, identity: str | None, estimate: int | Callable[[], int]
    ) -> TokenReservation:
        """Set aside `estimate` tokens (capped at the budget) or refuse with 429.

        A text never has more tokens than bytes plus a few specials, so the body size
        bounds what the request can cost; `settle` then charges the real count. A
        callable estimate is computed only for a client with a token budget: counting a
        16 MiB body's bytes is work a server without tokens per minute never needs.
        """
        client = self._clients.get(identity) if identity else None
        bucket = client.tokens if client is not None else None
        if bucket is None:
            return TokenReservation(None, 0.0)
        now = time.monotonic()
        most = estimate() if callable(estimate) else estimate
        amount = min(float(most), bucket.capacity)
        if not bucket.try_take(amount, now):
            raise _rate_limited("tokens", bucket, amount, now)
        return TokenReservation(bucket, amount)


def _key_index(identity: str | None) -> int | None:
    if identity is None or not identity.startswith("key#"):
        return None
    return int(identity[4:].split(":", 1)[0])


def _replay_memory(policy: SigningPolicy) -> signing.ReplayMemory:
    return signing.ReplayMemory(policy.capacity)


def _rate_limited(name: str, bucket: TokenBucket, amount: float, now: float) -> ApiError:
    wait = max(1, math.ceil(bucket.seconds_until(amount, now)))
    return ApiError(
        429,
        f"Rate limit reached for {name}; retry in {wait} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(wait), **_limit_headers(name, bucket, now)},
    )


def most_tokens(texts: Iterable[str | Sized], prefix: str = "") -> int:
    """An upper bound on what `texts` can cost: a token covers at least one byte of text
    (or is one given id), plus up to two special tokens per input; `prefix` (a query
    prefix or a filled instruction template) goes in front of every text, not ids."""
    extra = len(prefix.encode("utf-8", "surrogatepass"))
    return sum(
        len(text.encode("utf-8", "surrogatepass")) + extra + 2
        if isinstance(text, str)
        else len(text) + 2
        for text in texts
    )


def _digest(key: bytes) -> bytes:
    """Fixed length whatever the key: `compare_digest` on raw keys leaks their length."""
    return hashlib.sha256(key).digest()


def _match(token: bytes, digests: list[bytes]) -> int | None:
    """Compare against every key, always, each in constant time. No token never matches
    (keys are never empty, and this does not rely on it)."""
    if not token:
        return None
    probe = _digest(token)
    matched: int | None = None
    for index, digest in enumerate(digests):
        if hmac.compare_digest(probe, digest):
            matched = index
    return matched


class SecurityMiddleware:
    """Admin paths need an admin key; other non-public paths an API key and budget; and
    where a signing secret applies, a valid signature over the request.

    The signature covers the body, which the route has not read yet: the middleware
    reads it here, through the same size-bounded reader the routes use (413 beyond the
    limit, refused by Content-Length before a byte is read), checks the HMAC, and hands
    the route a `receive` that replays that one bytes object and then passes the
    client's messages through (a disconnect still reaches the route). The route's own
    read joins a single chunk, which returns the same object: the body is in memory once.
    Unsigned servers skip all of this. The cheap checks (header shape, clock, a
    signature seen before) run before the rate limit and the read, the HMAC after.
    """

    def __init__(
        self,
        app: ASGIApp,
        control: Callable[[], AccessControl],
        reject: Rejecter,
        limit: Callable[[], int] = lambda: 16 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.control = control
        self.reject = reject
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control = self.control()  # looked up per request: a reload may replace it
        path = routed_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or control.is_public(path):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            if path == "/admin" or path.startswith("/admin/"):
                _check_admin(control, scope)
                identity = state["client"] = control.admin_identity(scope)
                receive = await self._signed(control, identity, scope, receive)
                await self.app(scope, receive, send)
                return
            identity = control.identify(scope)
            if identity is None:
                state["refusal"] = "missing API key" if not _bearer(scope) else "unknown API key"
                raise ApiError(
                    401,
                    "Incorrect or missing API key; send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                )
            state["client"] = identity
            check = _precheck(control, identity, scope)
            headers = control.admit(identity)
            if check is not None:
                receive = await self._verified(control, check, scope, receive)
        except ApiError as error:
            await self.reject(error)(scope, receive, send)
            return
        except ClientDisconnect:
            return  # left while its body was read: nobody to answer

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start" and headers:
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _signed(
        self, control: AccessControl, identity: str | None, scope: Scope, receive: Receive
    ) -> Receive:
        check = _precheck(control, identity, scope)
        return receive if check is None else await self._verified(control, check, scope, receive)

    async def _verified(
        self, control: AccessControl, check: _Check, scope: Scope, receive: Receive
    ) -> Receive:
        """The body read (bounded), the HMAC checked, the signature remembered; the
        `receive` that gives the route the same body."""
        body = await read_body(Request(scope, receive), self.limit())
        parsed, secret = check
        target = _target(scope)
        body_hash = hashlib.sha256(body).hexdigest()
        with _refusing(scope):
            expected = signing.expected_digest(
                secret, parsed.timestamp, scope["method"], target, body_hash
            )
            signing.check_digest(parsed, expected)
            control.replay.accept(parsed, control.signing.window)
        return _replaying(body, receive)


_Check = tuple[signing.ParsedSignature, bytes]


def _precheck(control: AccessControl, identity: str | None, scope: Scope) -> _Check | None:
    """What needs no body: a signature present where one must be, well formed, within
    the window, not one already used. None when there is nothing to check."""
    secret, required = control.signing_for(identity)
    header = _header(scope, signing.SIGNATURE_HEADER.encode())
    if secret is None or (header is None and not required):
        return None
    with _refusing(scope):
        parsed = signing.parse_signature(header)
        signing.check_fresh(parsed, control.signing.window)
        if control.replay.seen(parsed.digest):
            raise signing.SignatureError("replayed", "this signature was already used")
    return parsed, secret


class _refusing:  # noqa: N801 - used as a statement: `with _refusing(scope):`
    """Turns a SignatureError into the 401 (503 for a full replay memory) it answers,
    leaving its reason in the request's state for the audit log."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if not isinstance(error, signing.SignatureError):
            return
        self.scope.setdefault("state", {})["refusal"] = error.reason
        if error.reason == "memory_full":
            wait = str(math.ceil(error.retry_after or 1))
            raise ApiError(
                503,
                str(error),
                type="service_unavailable",
                code="signature_memory_full",
                headers={"Retry-After": wait},
            ) from None
        raise ApiError(401, str(error), code="invalid_signature") from None


def _target(scope: Scope) -> bytes:
    """The request target as the client sent it: raw path, and `?query` if any."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return raw + b"?" + query if query else raw


def _replaying(body: bytes, receive: Receive) -> Receive:
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return bytes(value)
    return None


class AdminGuard:
    """The admin routes' own check, whatever path reached them: the middleware decides
    on the path as it reads it, this on the route that actually matched.

    It also audits: a change (any method but GET) is recorded as started before it runs
    (if that record cannot be written, the change answers 503 and does not run), and its
    outcome before its response is sent, unless the route recorded it itself with
    `audit.record` (which adds what it changed). An outcome that cannot be recorded
    turns a success into 503."""

    def __init__(
        self,
        app: ASGIApp,
        control: Callable[[], AccessControl],
        reject: Rejecter,
        audit: Callable[[], AuditLog] = AuditLog.disabled,
    ) -> None:
        self.app = app
        self.control = control
        self.reject = reject
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        control = self.control()
        try:
            _check_admin(control, scope)
        except ApiError as error:
            await self.reject(error)(scope, receive, send)
            return
        caller = control.admin_identity(scope)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("GET", "HEAD"):
                await self.app(scope, receive, send_status)
            else:
                await self._audited(scope, receive, send_status)
        finally:  # one audit line per admin call, whatever its outcome
            _audit.info(
                "admin %s %s by %s: %d",
                scope["method"],
                scope["path"],
                caller,
                status,
                extra={"admin": caller, "action": scope["path"], "status": status},
            )

    async def _audited(self, scope: Scope, receive: Receive, send: Send) -> None:
        audit = self.audit()
        action = action_of(routed_path(scope))
        try:
            audit.event(scope, action, "started")
        except AuditUnavailableError as exc:
            await self.reject(to_api_error(exc))(scope, receive, send)
            return
        held: list[Message] = []

        async def send_recorded(message: Message) -> None:
            """Hold the response until its outcome is recorded (admin answers are small)."""
            held.append(message)
            if message["type"] != "http.response.body" or message.get("more_body", False):
                return
            replacement = _record_outcome(audit, scope, action, held)
            for part in replacement or held:
                await send(part)

        await self.app(scope, receive, send_recorded)


def _record_outcome(
    audit: AuditLog, scope: Scope, action: str, held: list[Message]
) -> list[Message] | None:
    """Write the outcome of an admin change the route did not record; None to send the
    response as it is, else the 503 that replaces a success that went unrecorded."""
    status = int(held[0]["status"])
    if scope.get("state", {}).get("audited"):
        return None
    reason = None
    if status >= 400:
        body = b"".join(m.get("body", b"") for m in held[1:])
        reason = _error_code(body) or f"status {status}"
    try:
        audit.event(scope, action, "ok" if status < 400 else "failed", reason, status=status)
    except AuditUnavailableError as exc:
        if status >= 400:
            return None  # it failed anyway; the started record stands
        error = to_api_error(exc)
        return [
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json")],
            },
            {"type": "http.response.body", "body": _error_body(error)},
        ]
    return None


def _error_code(body: bytes) -> str | None:
    try:
        error = orjson.loads(body).get("error", {})
        return str(error.get("code") or error.get("message") or "")[:200] or None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _error_body(error: ApiError) -> bytes:
    return orjson.dumps(
        {"error": {"message": error.message, "type": error.type, "param": None, "code": error.code}}
    )


def _check_admin(control: AccessControl, scope: Scope) -> None:
    if not control.admin_enabled:
        raise ApiError(
            403, "the admin API is off; start the server with --admin-key", code="admin_disabled"
        )
    if not control.is_admin(scope):
        raise ApiError(
            401, "the admin API needs 'Authorization: Bearer <admin key>'", code="invalid_api_key"
        )


def _limit_headers(name: str, bucket: TokenBucket, now: float) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{name}": str(int(bucket.capacity)),
        f"x-ratelimit-remaining-{name}": str(max(0, int(bucket.level))),
        f"x-ratelimit-reset-{name}": f"{bucket.seconds_until(bucket.capacity, now):.3f}s",
    }


def _bearer(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return b""
