"""Admin model paths against --models-dir, on the real app in-process: `~`, symlinks,
`..`, NUL bytes and unknown users are refused with one message that says nothing about
the file, and what passes is stored resolved. No model loads: every path here is
refused, or is a file under the models directory that is not GGUF."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from embellama.cli.options import SERVER_OPTIONS, resolve
from embellama.cli.plan import model_spec_from_fields
from embellama.config import ModelSpec
from embellama.server.app import create_app
from embellama.server.security import AccessControl
from embellama.server.state import Deployment, ServerState

ADMIN = {"Authorization": "Bearer sk-admin-key-000000001"}
SERVER = resolve(None, SERVER_OPTIONS, environ={})
SECRET = b"secret bytes that must never show up in an answer"


def _from_fields(name: str, fields: object) -> ModelSpec:
    return model_spec_from_fields(name, fields, SERVER)


def _load(models_dir: Path | None, body: dict[str, Any]) -> httpx.Response:
    deployment = Deployment(
        models=(),
        access=AccessControl(admin_keys=["sk-admin-key-000000001"]),
        models_dir=models_dir,
        model_from_fields=_from_fields,
    )

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(ServerState(deployment)))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/admin/models/probe/load", json=body, headers=ADMIN)

    return asyncio.run(call())


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A models directory (the working directory too, as in a container), and a home
    directory outside it holding a secret file."""
    models, home = tmp_path / "models", tmp_path / "home"
    models.mkdir()
    home.mkdir()
    (home / "x.gguf").write_bytes(SECRET)
    (models / "escape.gguf").symlink_to(home / "x.gguf")
    (models / "inside.gguf").write_bytes(SECRET)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(models)
    return {"models": models, "home": home}


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("path_not_allowed", "path")
    assert "secret" not in response.text and "bytes" not in response.text


def test_a_home_path_is_expanded_before_the_check(layout: dict[str, Path]) -> None:
    """`~/x.gguf` is $HOME/x.gguf, outside: refused, though `./~/x.gguf` would be inside."""
    _assert_refused(_load(layout["models"], {"path": "~/x.gguf"}))


def test_a_symlink_out_of_the_models_dir_is_refused(layout: dict[str, Path]) -> None:
    _assert_refused(_load(layout["models"], {"path": str(layout["models"] / "escape.gguf")}))
    _assert_refused(_load(layout["models"], {"path": "escape.gguf"}))


def test_every_refusal_reads_the_same(layout: dict[str, Path]) -> None:
    """Existing or not, readable or not, a path or not: one answer, nothing about the file."""
    home = layout["home"]
    paths = [
        "~/x.gguf",
        "~/missing.gguf",
        str(home / "x.gguf"),
        str(home / "missing.gguf"),
        "escape.gguf",
        "../home/x.gguf",
        "/etc/passwd",
        "/nonexistent/dir/m.gguf",
        "~no-such-user-embellama/x.gguf",
        "inside\0.gguf",
        "",
        "/" + "x" * 5000,
    ]
    answers = [_load(layout["models"], {"path": path}) for path in paths]
    for answer in answers:
        _assert_refused(answer)
    assert len({answer.text for answer in answers}) == 1


def test_no_models_dir_refuses_every_path(layout: dict[str, Path]) -> None:
    _assert_refused(_load(None, {"path": "inside.gguf"}))


def test_a_relative_path_is_resolved_under_the_models_dir(
    layout: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not against the working directory: from elsewhere, `inside.gguf` is the models
    directory's file (not GGUF, so the load names it: the file is one the admin may use)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inside.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(elsewhere)
    response = _load(layout["models"], {"path": "inside.gguf"})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert str(os.path.realpath(layout["models"] / "inside.gguf")) in message
    assert "bad magic" in message


def test_an_unreadable_name_under_the_models_dir_is_a_400(layout: dict[str, Path]) -> None:
    """Inside the directory the file may be named, but a name the OS refuses is still the
    client's mistake: a 400, not a 500."""
    response = _load(layout["models"], {"path": "x" * 5000})
    assert response.status_code == 400, response.text
    assert "File name too long" in response.json()["error"]["message"]
