"""`embellama embed --output X.parquet --quantize KIND`: the `embedding` column holds the
integer form vectors.py computes (typed int8/uint8 lists, or fixed-size binary), the
same codes the library gives, and a resume with another form is another job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embellama import EmbeddingEngine
from tests.fixtures.tiny_encoders import build_tiny_encoder

pytestmark = pytest.mark.slow

TEXTS = [f"row {n}: local vector search over documents about bread and flour" for n in range(120)]
COLUMN_TYPES = {
    "int8": pa.list_(pa.int8(), 64),
    "uint8": pa.list_(pa.uint8(), 64),
    "binary": pa.list_(pa.int8(), 8),
    "ubinary": pa.binary(8),
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("quantized-model"), "bert").gguf


def _job(model: Path, source: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "embellama", "embed", "--input", str(source), "--output",
        str(output), "--model-path", str(model), "--no-progress", "--workers", "1", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind", list(COLUMN_TYPES))
def test_quantized_columns_hold_the_library_codes(
    tiny_model: Path, tmp_path: Path, kind: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    output = tmp_path / "out.parquet"
    done = _job(tiny_model, source, output, "--quantize", kind, "--row-group-size", "50")
    assert done.returncode == 0, done.stderr
    field = pq.read_schema(output).field("embedding")
    assert field.type == COLUMN_TYPES[kind]
    assert field.metadata == {b"embellama.quantization": kind.encode()}
    column = pq.read_table(output).column("embedding")
    if kind == "ubinary":
        got = np.frombuffer(b"".join(column.to_pylist()), np.uint8).reshape(len(TEXTS), 8)
    else:
        got = np.asarray(column.to_pylist())
    with EmbeddingEngine.from_path(tiny_model) as engine:
        want = engine.embed_with_details(TEXTS, quantize=kind).codes(kind)
    assert got.shape == want.shape
    # One worker process vs the library in-process: the same decodes in other batches
    # may differ by float noise, moving a value by at most one step in a few components.
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert (diff != 0).mean() < 0.02, diff.max()
    if kind in ("int8", "uint8"):
        assert diff.max() <= 1


def test_quantize_is_part_of_the_job_and_needs_parquet(tiny_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:10]))
    output = tmp_path / "out.parquet"
    assert _job(tiny_model, source, output, "--quantize", "int8").returncode == 0
    again = _job(tiny_model, source, output, "--quantize", "binary")
    assert again.returncode == 2, again.stderr  # a finished file of another job
    assert "quantize: 'int8' -> 'binary'" in again.stderr, again.stderr
    jsonl = _job(tiny_model, source, tmp_path / "out.jsonl", "--quantize", "int8")
    assert jsonl.returncode != 0
    assert "--quantize needs --output FILE.parquet" in jsonl.stderr
