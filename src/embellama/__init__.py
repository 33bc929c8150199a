"""embellama: exact, fast text embeddings from GGUF models through llama.cpp."""

from embellama.cache import EmbeddingCache
from embellama.config import (
    BatchingConfig,
    EngineConfig,
    ModelConfig,
    ModelKind,
    Normalization,
    Pooling,
    Truncation,
)
from embellama.default_model import DEFAULT_MODEL_NAME, prepare_default_model
from embellama.engine import AsyncEmbeddingEngine, EmbeddingEngine
from embellama.errors import (
    ConfigError,
    DefaultModelNotPreparedError,
    EmbellamaError,
    EmptyInputError,
    EngineClosedError,
    InferenceError,
    InputError,
    InputTooLongError,
    InvalidDimensionsError,
    InvalidTextError,
    InvalidTokenError,
    ModelError,
    ModelFileError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnloadingError,
    WrongModelKindError,
)
from embellama.model.gguf import GGUFInfo, read_gguf_info
from embellama.model.loaded import ModelInfo
from embellama.results import EmbeddingResult, RerankHit, RerankResult, Timings
from embellama.vectors import Quantization

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL_NAME",
    "AsyncEmbeddingEngine",
    "BatchingConfig",
    "ConfigError",
    "DefaultModelNotPreparedError",
    "EmbeddingCache",
    "EmbeddingEngine",
    "EmbeddingResult",
    "EmbellamaError",
    "EmptyInputError",
    "EngineClosedError",
    "EngineConfig",
    "GGUFInfo",
    "InferenceError",
    "InputError",
    "InputTooLongError",
    "InvalidDimensionsError",
    "InvalidTextError",
    "InvalidTokenError",
    "ModelConfig",
    "ModelError",
    "ModelFileError",
    "ModelInfo",
    "ModelKind",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelUnloadingError",
    "Normalization",
    "Pooling",
    "Quantization",
    "RerankHit",
    "RerankResult",
    "Timings",
    "Truncation",
    "WrongModelKindError",
    "__version__",
    "prepare_default_model",
    "read_gguf_info",
]
