"""The admin API behind a proxy's `root_path`, through uvicorn's real HTTP parsers: a
request line that does not start with "/" (`GET admin/config`) is glued to the root path
by the parser (uvicorn prepends `root_path` to the target), and must not reach an admin
handler with a user key, whatever the root."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from embellama.server.app import create_app
from embellama.server.security import AccessControl
from embellama.server.state import Deployment, ServerState
from tests.e2e.server import free_port

USER_KEY = "sk-routing-user-000001"
ADMIN_KEY = "sk-routing-admin-00001"


@contextmanager
def _running(root_path: str, http: str) -> Iterator[int]:
    """A real uvicorn server on loopback (no model: the admin config needs none)."""
    access = AccessControl(keys=[USER_KEY], admin_keys=[ADMIN_KEY])
    state = ServerState(deployment=Deployment(models=(), access=access, settings={"port": 1}))
    port = free_port()
    config = uvicorn.Config(
        create_app(state),
        host="127.0.0.1",
        port=port,
        root_path=root_path,
        http=http,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _status(port: int, target: str, key: str) -> tuple[int, bytes]:
    """Send one raw request line, byte for byte, as no HTTP client library would."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize(
    ("root_path", "target"),
    [
        ("/", "admin/config"),
        ("/adm", "in/config"),
        ("/ad", "min/workers"),
        ("/api", "/admin/config"),
        ("", "/admin/config"),
    ],
)
def test_a_user_key_never_reaches_an_admin_handler(root_path: str, target: str, http: str) -> None:
    with _running(root_path, http) as port:
        status, body = _status(port, target, USER_KEY)
        assert status != 200 and b"models_dir" not in body and b"slot" not in body, (
            status,
            body,
        )


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("root_path", ["/api", "/", ""])
def test_the_admin_key_still_reaches_the_admin_api_under_a_root_path(
    root_path: str, http: str
) -> None:
    with _running(root_path, http) as port:
        status, body = _status(port, "/admin/config", ADMIN_KEY)
        assert status == 200 and b"models_dir" in body, body
        assert _status(port, "/admin/config", USER_KEY)[0] == 401
