"""The first script a library user writes, without `with` or close(), exits quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
from embellama import EmbeddingEngine
e = EmbeddingEngine.default()
print(e.embed("hello").shape)
"""


def test_an_engine_left_open_shuts_down_quietly_at_exit(minilm_gguf: Path) -> None:
    # The open engine's loop still has a feeder task per model when the interpreter
    # exits; the finalizer must stop it before Python reports it as destroyed pending.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(384,)\n"
    assert done.stderr == ""
