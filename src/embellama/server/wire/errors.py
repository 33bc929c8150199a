"""The error shapes routes answer with: OpenAI's `{"error": {...}}` (most routes),
Ollama's `{"error": "..."}` (`/api/*`) and TEI's `{"error", "error_type"}`."""

from __future__ import annotations

from typing import Literal

from typing_extensions import TypedDict

__all__ = ["Error", "ErrorDetail", "OllamaError", "TeiError", "TeiErrorType"]

# TEI's ErrorType names; a strict TEI client knows no others.
TeiErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(TypedDict):
    error: ErrorDetail


class OllamaError(TypedDict):
    error: str


class CohereError(TypedDict):
    message: str


class TeiError(TypedDict):
    error: str
    error_type: TeiErrorType
