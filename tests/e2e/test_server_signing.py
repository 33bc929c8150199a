"""Signed requests on a real server: the official openai SDK signs through HMACAuth; a
replayed, stale, wrong, altered, malformed or missing signature is a 401 in OpenAI's
shape (`invalid_signature`) that says nothing of the expected value; a key's own secret
is not the server-wide one; the replay memory stays bounded under a flood and recovers
as signatures leave the window; and the body bound still holds for signed bodies."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from embellama.signing import SIGNATURE_HEADER, HMACAuth, sign
from tests.e2e.server import ServerProcess, free_port, serving

USER_KEY = "sk-sign-user-000000000001"  # signs with the server-wide secret
KEYED_KEY = "sk-sign-keyed-00000000001"  # has its own secret
ADMIN_KEY = "sk-sign-admin-00000000001"
SERVER_SECRET = "server-wide-secret-0123456789abcdef"
KEY_SECRET = "per-key-secret-fedcba9876543210"
CAPACITY = 200
MAX_BODY = 64 * 1024
EMBED = "/v1/embeddings"


@pytest.fixture(scope="module")
def signed(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("signing")
    config = folder / "embellama.toml"
    config.write_text(
        f"""
[server]
api_key = ["{USER_KEY}"]
admin_key = ["{ADMIN_KEY}"]
require_signed_requests = true
signature_replay_capacity = {CAPACITY}
max_body_bytes = {MAX_BODY}
workers = 1

[[keys]]
key = "{KEYED_KEY}"
signing_secret = "{KEY_SECRET}"
require_signature = true

[[models]]
name = "minilm"
path = "{minilm_gguf}"
threads_per_worker = 1
"""
    )
    env = {"EMBELLAMA_SIGNING_SECRET": SERVER_SECRET}
    with serving(["--config", str(config)], server_logs, env) as process:
        yield process


def _post(
    server: ServerProcess,
    body: bytes,
    signature: str | None,
    *,
    key: str = USER_KEY,
    path: str = EMBED,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return httpx.post(server.url + path, content=body, headers=headers, timeout=30)


def _body(text: str) -> bytes:
    return orjson.dumps({"input": text, "model": "minilm"})


def _refused(response: httpx.Response, secret: str = SERVER_SECRET) -> str:
    """A 401 in OpenAI's shape, code invalid_signature, quoting no expected value."""
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert secret not in response.text
    assert not any(
        len(word) >= 32 and all(c in "0123456789abcdef" for c in word)
        for word in response.text.replace('"', " ").split()
    ), response.text
    return str(error["message"])


def test_the_openai_sdk_signs_through_hmac_auth(signed: ServerProcess) -> None:
    for key, secret in ((USER_KEY, SERVER_SECRET), (KEYED_KEY, KEY_SECRET)):
        with httpx.Client(auth=HMACAuth(secret)) as http:
            # openai 3.x types its client as httpx2's; an httpx.Client serves it (this test
            # is that proof: the server refuses every unsigned request).
            client = openai.OpenAI(
                base_url=signed.url + "/v1",
                api_key=key,
                http_client=http,  # type: ignore[arg-type]
                max_retries=0,
            )
            # The same request twice in a row: the second is signed a second later, not
            # refused as a replay of the first.
            first = client.embeddings.create(model="minilm", input=["signed text"])
            again = client.embeddings.create(model="minilm", input=["signed text"])
        assert first.data[0].embedding == again.data[0].embedding
        assert len(first.data[0].embedding) == 384


def test_an_unsigned_request_is_refused_and_the_server_keeps_serving(
    signed: ServerProcess,
) -> None:
    assert "no x-embellama-signature" in _refused(_post(signed, _body("unsigned"), None))
    body = _body("signed after the refusal")
    assert _post(signed, body, sign(SERVER_SECRET, "POST", EMBED, body)).status_code == 200


def test_a_replayed_signature_is_refused(signed: ServerProcess) -> None:
    body = _body("replay me")
    signature = sign(SERVER_SECRET, "POST", EMBED, body)
    assert _post(signed, body, signature).status_code == 200
    assert "already used" in _refused(_post(signed, body, signature))
    assert "already used" in _refused(_post(signed, body, signature))


@pytest.mark.parametrize("skew", [301, -301, 3600, -(10**9)])
def test_a_stale_signature_is_refused(signed: ServerProcess, skew: int) -> None:
    body = _body(f"stale {skew}")
    signature = sign(SERVER_SECRET, "POST", EMBED, body, now=time.time() + skew)
    assert "clock" in _refused(_post(signed, body, signature))


@pytest.mark.parametrize("skew", [290, -290])
def test_a_signature_inside_the_window_is_accepted(signed: ServerProcess, skew: int) -> None:
    body = _body(f"fresh {skew}")
    signature = sign(SERVER_SECRET, "POST", EMBED, body, now=time.time() + skew)
    assert _post(signed, body, signature).status_code == 200


def test_a_wrong_secret_is_refused(signed: ServerProcess) -> None:
    body = _body("wrong secret")
    wrong = sign("not-the-server-secret-000000", "POST", EMBED, body)
    assert "does not match" in _refused(_post(signed, body, wrong))


def test_a_body_altered_after_signing_is_refused(signed: ServerProcess) -> None:
    body = _body("the text that was signed")
    signature = sign(SERVER_SECRET, "POST", EMBED, body)
    altered = _body("the text that was sent")
    assert "does not match" in _refused(_post(signed, altered, signature))
    # One byte of whitespace is a different body too.
    assert "does not match" in _refused(_post(signed, body + b" ", signature))


def test_a_path_or_method_altered_after_signing_is_refused(signed: ServerProcess) -> None:
    body = _body("path")
    signature = sign(SERVER_SECRET, "POST", EMBED, body)
    _refused(_post(signed, body, signature, path="/embeddings"))  # an alias of the route
    _refused(_post(signed, body, signature, path=EMBED + "?x=1"))
    get = sign(SERVER_SECRET, "GET", EMBED, body)
    _refused(_post(signed, body, get))


def _valid(body: bytes) -> str:
    return sign(SERVER_SECRET, "POST", EMBED, body)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: "t=1", id="t-only"),
        pytest.param(lambda s: s.split(",")[0], id="no-v1"),
        pytest.param(lambda s: s.split(",")[1], id="no-t"),
        pytest.param(lambda s: ",".join(reversed(s.split(","))), id="reordered"),
        pytest.param(lambda s: s.replace(",", ", "), id="space-after-comma"),
        pytest.param(lambda s: s + "," + s.split(",")[1], id="two-v1"),
        pytest.param(lambda s: s[:-2], id="short-hex"),
        pytest.param(lambda s: s + "00", id="long-hex"),
        pytest.param(lambda s: s[:-1] + "g", id="not-hex"),
        pytest.param(lambda s: s.replace("t=", "t=-"), id="negative-t"),
        pytest.param(lambda s: s.replace("t=", "t=1.5"), id="fractional-t"),
        pytest.param(lambda s: s.replace("t=", "t=" + "9" * 20), id="huge-t"),
        pytest.param(lambda s: s.replace("v1=", "v2="), id="other-scheme"),
        pytest.param(lambda s: "sha256=" + s, id="prefixed"),
        pytest.param(lambda s: "x" * 8000, id="huge"),
    ],
)
def test_a_malformed_signature_is_refused(signed: ServerProcess, mangle: object) -> None:
    body = _body("malformed")
    assert callable(mangle)
    message = _refused(_post(signed, body, mangle(_valid(body))))
    assert "not 't=<unix seconds>,v1=<hex>'" in message or "no x-embellama" in message


def test_a_non_ascii_header_is_refused(signed: ServerProcess) -> None:
    body = _body("bytes")
    headers = [
        (b"authorization", f"Bearer {USER_KEY}".encode()),
        (b"content-type", b"application/json"),
        (SIGNATURE_HEADER.encode(), "t=1,v1=é".encode("latin-1")),
    ]
    response = httpx.post(signed.url + EMBED, content=body, headers=headers, timeout=30)
    _refused(response)


def test_a_keys_own_secret_is_not_the_server_wide_one(signed: ServerProcess) -> None:
    body = _body("per key")
    # The keyed key signs with its own secret only; the user key with the server's only.
    _refused(_post(signed, body, sign(SERVER_SECRET, "POST", EMBED, body), key=KEYED_KEY))
    _refused(_post(signed, body, sign(KEY_SECRET, "POST", EMBED, body), key=USER_KEY))
    own = sign(KEY_SECRET, "POST", EMBED, body)
    assert _post(signed, body, own, key=KEYED_KEY).status_code == 200
    # A signature is bound to the secret, not to the key that sent it.
    server = sign(SERVER_SECRET, "POST", EMBED, body, now=time.time() + 1)
    assert _post(signed, body, server, key=USER_KEY).status_code == 200


def test_the_admin_api_needs_a_signature_too(signed: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    unsigned = httpx.post(signed.url + "/admin/undrain", headers=headers)
    _refused(unsigned)
    headers[SIGNATURE_HEADER] = sign(SERVER_SECRET, "POST", "/admin/undrain", b"")
    assert httpx.post(signed.url + "/admin/undrain", headers=headers).status_code == 200
    headers[SIGNATURE_HEADER] = sign(SERVER_SECRET, "GET", "/admin/config", b"")
    shown = httpx.get(signed.url + "/admin/config", headers=headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["server"]["signing_secret"].startswith("…")
    for secret in (SERVER_SECRET, KEY_SECRET, USER_KEY, KEYED_KEY, ADMIN_KEY):
        assert secret not in shown.text
        assert secret not in signed.log()


def test_a_signed_body_over_the_size_bound_is_413(signed: ServerProcess) -> None:
    body = _body("x" * (MAX_BODY + 1))
    response = _post(signed, body, _valid(body))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


def _info(server: ServerProcess) -> dict[str, object]:
    headers = {
        "Authorization": f"Bearer {USER_KEY}",
        SIGNATURE_HEADER: sign(SERVER_SECRET, "GET", "/info", b"", now=time.time() - 299),
    }
    response = httpx.get(server.url + "/info", headers=headers)
    assert response.status_code == 200, response.text
    signatures = response.json()["auth"]["signatures"]
    assert isinstance(signatures, dict)
    return signatures


@pytest.mark.slow
def test_the_replay_memory_is_bounded_under_a_flood(signed: ServerProcess) -> None:
    """Distinct valid signatures that expire soon after the flood: they fill the memory
    to its capacity, then new ones get 503 with Retry-After (never an early forget that
    would let one be replayed); once they leave the window, signatures are accepted
    again. The flood's signatures live `lifetime` seconds; a flood slower than that (a
    loaded machine) sees them go stale, so it is sent again with twice the lifetime, and
    the test does not depend on the machine's speed."""
    shown = _info(signed)
    assert shown["window_seconds"] == 300.0
    assert shown["required"] is True
    memory = shown["replay_memory"]
    assert isinstance(memory, dict) and memory["capacity"] == CAPACITY
    for attempt, lifetime in enumerate((10, 20, 40, 80, 160)):
        flood = _flood(signed, f"flood{attempt}", old=int(time.time()) - 300 + lifetime)
        if flood is not None:
            break
    else:
        pytest.fail("every flood went stale before it filled the memory")
    accepted, refusal, old, first = flood
    assert accepted <= CAPACITY
    assert refusal.json()["error"]["code"] == "signature_memory_full"
    assert 1 <= int(refusal.headers["retry-after"]) <= 300
    # A replay of an accepted one is still refused while the memory is full.
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    signature = sign(SERVER_SECRET, "GET", first, b"", now=old)
    replayed = httpx.get(signed.url + first, headers={**headers, SIGNATURE_HEADER: signature})
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["error"]["message"], replayed.text
    time.sleep(max(0.0, old + 300 - time.time()) + 1.2)
    after = _info(signed)["replay_memory"]
    assert isinstance(after, dict) and int(after["size"]) <= CAPACITY - accepted + 1


def _flood(
    signed: ServerProcess, prefix: str, old: int
) -> tuple[int, httpx.Response, int, str] | None:
    """Sends distinct signatures stamped `old` until the memory refuses one: (accepted,
    the refusal, old, the first path). None when one went stale first, or the memory
    filled so late that a replay could not be sent inside the window: too slow."""
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    accepted = 0
    with httpx.Client(base_url=signed.url, headers=headers) as client:
        for index in range(CAPACITY + 20):
            path = f"/v1/models/{prefix}-{index}"  # a 404 once signed: cheap and distinct
            response = client.get(
                path, headers={SIGNATURE_HEADER: sign(SERVER_SECRET, "GET", path, b"", now=old)}
            )
            if response.status_code == 503:
                if time.time() > old + 300 - 5:  # too late to replay one inside the window
                    return None
                return accepted, response, old, f"/v1/models/{prefix}-0"
            if response.status_code == 401 and "server's clock" in response.text:
                return None
            assert response.status_code == 404, response.text
            accepted += 1
    pytest.fail("the memory took more signatures than its capacity")


def test_hmac_matches_the_documented_construction() -> None:
    """The header is exactly the README's recipe, so a curl/openssl client interoperates."""
    body = b'{"input": "x"}'
    header = sign(SERVER_SECRET, "post", EMBED, body, now=1_700_000_000)
    message = f"1700000000\nPOST\n{EMBED}\n{hashlib.sha256(body).hexdigest()}".encode()
    digest = hmac.new(SERVER_SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"


def _start_refused(args: list[str], env: dict[str, str]) -> str:
    """The server exits 2 at start with one line on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBELLAMA_")}
    home = os.environ.get("EMBELLAMA_HOME")
    done = subprocess.run(
        [sys.executable, "-m", "embellama", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **({"EMBELLAMA_HOME": home} if home else {}), **env},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "file", "expected"),
    [
        (
            ["--signing-secret", "short-secret"],
            {},
            None,
            "argument --signing-secret: a secret is shorter than 16",
        ),
        (
            [],
            {"EMBELLAMA_SIGNING_SECRET": "has a space 0000000"},
            None,
            "invalid EMBELLAMA_SIGNING_SECRET: a secret contains a space",
        ),
        (
            ["--signing-secret-file", "{file}"],
            {},
            "\n",
            "--signing-secret-file {file}: the secret is empty",
        ),
        (
            ["--require-signed-requests"],
            {},
            None,
            "--require-signed-requests needs --signing-secret",
        ),
        (
            ["--signing-secret", "a" * 20, "--signing-secret-file", "{file}"],
            {},
            "b" * 20,
            "not both",
        ),
    ],
    ids=["flag-short", "env-space", "file-empty", "required-without-secret", "both"],
)
def test_a_bad_or_missing_secret_fails_the_start_naming_its_source(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str | None, expected: str
) -> None:
    path = tmp_path / "secret"
    if file is not None:
        path.write_text(file)
    line = _start_refused([a.replace("{file}", str(path)) for a in args], env)
    assert expected.replace("{file}", str(path)) in line, line
    for secret in ("short-secret", "has a space 0000000", "a" * 20, "b" * 20):
        assert secret not in line
