"""The Containerfile, built and run for real, with no daemon and no registry.

A Debian bookworm base made by mmdebstrap (the local equivalent of debian:bookworm-slim)
is imported with podman; buildah builds the image from it and runs the server inside
(chroot isolation, host network). The base also gets this machine's extra CA
certificates: here, HTTPS to PyPI goes through an intercepting proxy. The first build
compiles llama-cpp-python (minutes); buildah's layer cache makes later ones quick.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from embellama import EmbeddingEngine
from tests.e2e.server import free_port
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/embellama-test-base:bookworm"
IMAGE = "localhost/embellama:test"


def _run(*command: str, timeout: float = 1800) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _base(scratch: Path) -> None:
    if subprocess.run(["podman", "image", "exists", BASE]).returncode == 0:
        return
    rootfs = scratch / "rootfs.tar"
    _run(
        "mmdebstrap",
        "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates",
        "--customize-hook=copy-in /usr/local/share/ca-certificates /usr/local/share",
        '--customize-hook=chroot "$1" update-ca-certificates',
        "bookworm",
        str(rootfs),
    )
    _run("podman", "import", str(rootfs), BASE)


@pytest.fixture(scope="module")
def container(minilm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [t for t in ("mmdebstrap", "podman", "buildah") if shutil.which(t) is None]
    assert not missing, f"missing {missing}: run `make image-tools`"
    _base(tmp_path_factory.mktemp("image-base"))
    model_dir = ROOT / "build" / "image-model"  # what `make image-model` fills
    model_dir.mkdir(parents=True, exist_ok=True)
    for source in (minilm_gguf, minilm_gguf.with_suffix(".json")):
        shutil.copyfile(source, model_dir / source.name)
    _run(
        "buildah", "bud", "--isolation", "chroot", "--cgroup-manager", "cgroupfs", "--layers",
        "--format", "docker", "--build-arg", f"BASE={BASE}", "-f", str(ROOT / "Containerfile"),
        "-t", IMAGE, str(ROOT),
    )  # fmt: skip
    name = _run("buildah", "from", IMAGE).strip()
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


def test_image_is_lean_non_root_and_checks_ready(container: str) -> None:
    config = json.loads(_run("buildah", "inspect", "--type", "image", IMAGE))
    docker = config["Docker"]["config"]
    assert docker["User"] == "embellama"
    assert "/ready" in " ".join(docker["Healthcheck"]["Test"])
    assert docker["Entrypoint"] == ["embellama"] and docker["Cmd"] == ["serve"]
    inside = ["buildah", "run", "--isolation", "chroot", container, "--"]
    assert _run(*inside, "id", "-u").strip() != "0"
    compilers = subprocess.run(
        [*inside, "sh", "-c", "command -v gcc || command -v cc || command -v cmake"],
        capture_output=True,
    )
    assert compilers.returncode != 0, compilers.stdout


def test_server_runs_in_the_image(container: str, minilm_gguf: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "container.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            ["buildah", "run", "--isolation", "chroot", "--env", f"EMBELLAMA_PORT={port}",
             container, "--", "embellama", "serve"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        texts = ["served from the image", "the default model, prepared at build time"]
        with OpenAI(base_url=url + "/v1", api_key="unused") as client:
            answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
        with EmbeddingEngine.from_path(minilm_gguf) as engine:
            expected = engine.embed(texts)
        for item, vector in zip(answer.data, expected, strict=True):
            assert_batch_invariant(item.embedding, vector)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
