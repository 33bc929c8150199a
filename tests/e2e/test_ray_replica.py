"""One Ray Serve replica's app as Ray runs it, without a cluster: built from the flags
`build` gives it, its lifespan on a thread that is not the main one (Ray's user-code
thread), serving through its ASGI interface."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from embellama.errors import ConfigError
from embellama.ray.serve import replica_app, replica_flags
from tests.fixtures.tiny_encoders import build_tiny_encoder

pytestmark = pytest.mark.slow

ADMIN = "replica-admin-key-0001"


def _serve_on_a_thread(app: Any) -> dict[str, Any]:
    """Start the app's lifespan on a new thread, as Ray Serve does; ask it for its
    workers and one embedding; stop it."""
    seen: dict[str, Any] = {}

    async def session() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
                headers = {"Authorization": f"Bearer {ADMIN}"}
                seen["workers"] = (await client.get("/admin/workers", headers=headers)).json()
                body = {"model": "m", "input": ["on a replica"]}
                seen["embed"] = (await client.post("/v1/embeddings", json=body)).status_code

    def run() -> None:
        try:
            asyncio.run(session())
        except BaseException as exc:
            seen["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    return seen


def test_a_replica_with_a_config_file_starts_off_the_main_thread_in_its_cpus(
    tmp_path: Path,
) -> None:
    """A replica reserving 2 CPUs runs 1 worker of 2 threads (serve's default of 2
    workers would put 4 threads on them); SIGHUP cannot be taken off the main thread,
    so the config file reloads through the admin API only, and the replica starts."""
    model = build_tiny_encoder(tmp_path, "bert").gguf
    config = tmp_path / "embellama.toml"
    config.write_text(f'[server]\nadmin_key = ["{ADMIN}"]\n')
    options = {"config": config, "model_path": model, "model_name": "m"}
    seen = _serve_on_a_thread(replica_app(replica_flags(2, dict(options))))
    assert "error" not in seen, repr(seen.get("error"))
    assert seen["embed"] == 200
    assert len(seen["workers"]["m"]) == 1, seen["workers"]
    with pytest.raises(ConfigError, match="workers=3 must be between 1 and"):
        replica_flags(2, {"workers": 3})


def test_switches_become_flags_without_a_value() -> None:
    """`serve run ... metrics_auth=true` passes the text "true"; a switch takes none."""
    flags = replica_flags(1, {"metrics_auth": "true", "add_eos": False, "port": 9000})
    assert flags[4:] == ["--metrics-auth", "--no-add-eos", "--port", "9000"]
    with pytest.raises(ConfigError, match="metrics_auth='maybe': expected true or false"):
        replica_flags(1, {"metrics_auth": "maybe"})
