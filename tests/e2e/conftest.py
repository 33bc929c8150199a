"""A shared real server process for the e2e tests that only read from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_ENGINE
from tests.e2e.server import ServerProcess, serving


@pytest.fixture(scope="module")
def server(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with serving(
        [
            "--model-path",
            str(minilm_gguf),
            "--model-name",
            "minilm",
            "--model-alias",
            "text-embedding-3-small",
            "--max-inputs-per-request",
            "64",
            "--max-body-bytes",
            "200000",
            "--workers",
            "2",
            "--threads-per-worker",
            "1",
            "--engine",
            TEST_ENGINE,
        ],
        server_logs,
    ) as process:
        yield process
