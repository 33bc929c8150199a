"""The Ollama adapter's answers: pipeline results and model facts as Ollama's wire
shapes (server/wire/ollama.py). Vectors go to orjson as numpy rows; nothing here
decides or runs anything."""

from __future__ import annotations

import datetime

import numpy as np
import orjson

from embellama import __version__
from embellama.pipeline import ServedModel
from embellama.results import EmbeddingResult
from embellama.server.wire.ollama import (
    OllamaDetails,
    OllamaEmbeddingsResponse,
    OllamaEmbedResponse,
    OllamaModel,
    OllamaRunning,
    OllamaShowResponse,
    OllamaVersion,
)

__all__ = [
    "OLLAMA_API_VERSION",
    "encode_ollama_embed",
    "encode_ollama_embedding",
    "ollama_models",
    "ollama_running",
    "ollama_show",
    "ollama_version",
]

# The Ollama release whose API these routes follow: clients that check a minimum
# version (for /api/embed, added in 0.3) read this, not embellama's own version.
OLLAMA_API_VERSION = "0.12.0"
# Models stay loaded until the server stops or an admin unloads them.
_NEVER = "9999-12-31T23:59:59Z"


def encode_ollama_embed(result: EmbeddingResult, started_ns: int, now_ns: int) -> bytes:
    body: OllamaEmbedResponse = {
        "model": result.model,
        "embeddings": list(np.ascontiguousarray(result.vectors, dtype="<f4")),
        "total_duration": max(0, now_ns - started_ns),
        "load_duration": 0,
        "prompt_eval_count": result.total_tokens,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_ollama_embedding(result: EmbeddingResult | None) -> bytes:
    """The legacy answer: one vector, or `[]` for an empty prompt (as Ollama)."""
    vector: object = [] if result is None else np.ascontiguousarray(result.vectors[0], dtype="<f4")
    body: OllamaEmbeddingsResponse = {"embedding": vector}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _tagged(name: str) -> str:
    return name if ":" in name else name + ":latest"


def _details(service: ServedModel) -> OllamaDetails:
    architecture = service.info().architecture
    return {
        "parent_model": "",
        "format": "gguf",
        "family": architecture,
        "families": [architecture],
        "parameter_size": "",
        "quantization_level": "quantized" if service.model.header.quantized else "",
    }


def _modified(service: ServedModel) -> str:
    when = datetime.datetime.fromtimestamp(service.stamp.mtime_ns / 1e9, datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def _model(service: ServedModel, name: str) -> OllamaModel:
    info = service.info()
    return {
        "name": _tagged(name),
        "model": _tagged(name),
        "modified_at": _modified(service),
        "size": info.file_size,
        "digest": info.fingerprint or "",
        "details": _details(service),
    }


def ollama_models(services: list[ServedModel]) -> list[OllamaModel]:
    """Every embedding model under each of its names, tagged `:latest` as Ollama lists."""
    return [_model(s, name) for s in services for name in (s.name, *s.aliases)]


def ollama_running(services: list[ServedModel]) -> list[OllamaRunning]:
    running: list[OllamaRunning] = []
    for service in services:
        listed = _model(service, service.name)
        running.append(
            {
                "name": listed["name"],
                "model": listed["model"],
                "size": listed["size"],
                "digest": listed["digest"],
                "details": listed["details"],
                "expires_at": _NEVER,
                "size_vram": 0,
                "context_length": service.info().context_length,
            }
        )
    return running


def ollama_show(service: ServedModel) -> OllamaShowResponse:
    info = service.info()
    arch = info.architecture
    return {
        "license": "",
        "modelfile": f"FROM {info.path.name}\n",
        "parameters": "",
        "template": "",
        "details": _details(service),
        "model_info": {
            "general.architecture": arch,
            f"{arch}.embedding_length": info.dimensions,
            f"{arch}.context_length": info.context_length,
            f"{arch}.pooling_type": info.pooling.value,
        },
        "capabilities": ["embedding"] if info.kind.value == "embedding" else [],
        "modified_at": _modified(service),
    }


def ollama_version() -> OllamaVersion:
    return {"version": OLLAMA_API_VERSION, "embellama": __version__}
