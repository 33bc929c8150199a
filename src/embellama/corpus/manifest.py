"""What a corpus job's rows depend on, written down so a resume can check it is the same job.

Every input that changes a row is recorded: the input file, the model file's identity,
every option that changes a vector (pooling, normalization, context, EOS, prefixes,
truncation, dimensions) and the columns read. A resume whose description differs in any
of them would mix two jobs' vectors in one file, so it is refused with the difference
named (`differences`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embellama.config import ModelConfig
from embellama.model.fingerprint import gguf_fingerprint
from embellama.model.gguf import read_gguf_info
from embellama.vectors import Quantization

__all__ = ["differences", "job_manifest", "model_file_fingerprint"]


def model_file_fingerprint(path: Path) -> str:
    """The GGUF's content fingerprint (model/fingerprint.py), as the cache keys use it:
    it changes when the file is replaced by another model, even one of the same size
    and name, and is the same for the same file at another path."""
    return gguf_fingerprint(read_gguf_info(path))


def job_manifest(
    input_path: Path,
    model: ModelConfig,
    *,
    text_column: str,
    id_column: str | None,
    keep_columns: list[str],
    row_group_size: int,
    truncate: str,
    dimensions: int | None,
    quantize: Quantization | None = None,
) -> dict[str, Any]:
    """A JSON-able description of everything a corpus job's rows depend on."""
    stat = input_path.stat()
    return {
        "input": str(input_path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "model": str(model.path.resolve()),
        "model_fingerprint": model_file_fingerprint(model.path),
        "text_column": text_column,
        "id_column": id_column,
        "keep_columns": keep_columns,
        "row_group_size": row_group_size,
        "truncate": truncate,
        "dimensions": dimensions,
        **_vector_options(model),
        # Only for a versioned model, so an unversioned job's manifest reads as before:
        # a resume with another version of the name is another job.
        **({"model_version": model.version} if model.version is not None else {}),
        # Only when set, so a float job's manifest reads as it did before quantization.
        **_quantized(model, quantize),
    }


def _quantized(model: ModelConfig, quantize: Quantization | None) -> dict[str, Any]:
    if quantize is None:
        return {}
    calibration = str(model.calibration_file) if model.calibration_file else "built-in"
    return {"quantize": quantize.value, "calibration": calibration if quantize.scalar else None}


def _vector_options(model: ModelConfig) -> dict[str, Any]:
    """The model settings that change a vector (None: as the GGUF says)."""
    return {
        "pooling": model.pooling.value if model.pooling else None,
        "normalization": model.normalization.value,
        "norm_p": model.norm_p,
        "n_ctx": model.n_ctx,
        "add_eos": model.add_eos,
        "query_prefix": model.query_prefix,
        "document_prefix": model.document_prefix,
        "instruction_template": model.instruction_template,
    }


def differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """`key: recorded -> wanted` for each entry that differs, in key order."""
    keys = sorted(set(recorded) | set(wanted))
    missing = "(not recorded)"
    return [
        f"{key}: {recorded.get(key, missing)!r} -> {wanted.get(key, missing)!r}"
        for key in keys
        if recorded.get(key, missing) != wanted.get(key, missing)
    ]
