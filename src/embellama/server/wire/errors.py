"""The error shape every route answers with: OpenAI's `{"error": {...}}`."""

from __future__ import annotations

from typing_extensions import TypedDict

__all__ = ["Error", "ErrorDetail"]


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(TypedDict):
    error: ErrorDetail
