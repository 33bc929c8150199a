"""Embed a list of rows, setting aside each row the model refuses with its reason.

Shared by every job that embeds a file (JSONL out, the Parquet corpus job, Ray actors),
so a bad row is the same bad row, with the same reason, whatever the output format.
No pyarrow here: the JSONL job runs on the light install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embellama.config import Truncation
from embellama.engine import EmbeddingEngine
from embellama.errors import InputError
from embellama.results import EmbeddingResult
from embellama.vectors import Quantization

__all__ = ["EmbeddedRows", "embed_rows", "errors_path", "plural", "text_problem"]


@dataclass(frozen=True)
class EmbeddedRows:
    keep: list[int]  # positions that were embedded, in order
    result: EmbeddingResult | None  # their vectors; None when no row could be
    problems: dict[int, str]  # position -> why it has no vector


def embed_rows(
    engine: EmbeddingEngine,
    texts: list[Any],
    truncate: Truncation,
    dimensions: int | None,
    quantize: Quantization | None = None,
) -> EmbeddedRows:
    """Embed the rows that can be; a row the engine refuses is taken out with its
    reason and the rest embedded again (one retry per bad row, rare in a real corpus)."""
    problems: dict[int, str] = {}
    keep = []
    for position, text in enumerate(texts):
        reason = text_problem(text)
        if reason is None:
            keep.append(position)
        else:
            problems[position] = reason
    while keep:
        try:
            result = engine.embed_with_details(
                [texts[p] for p in keep],
                truncate=truncate,
                dimensions=dimensions,
                quantize=quantize,
            )
        except InputError as exc:
            if exc.index is None:
                raise
            problems[keep.pop(exc.index)] = _row_reason(exc)
            continue
        return EmbeddedRows(keep, result, problems)
    return EmbeddedRows(keep, None, problems)


def text_problem(text: object) -> str | None:
    """Why `text` is no row's text, or None."""
    if text is None:
        return "no text (missing, null or not a string)"
    if not isinstance(text, str):
        return f"text is a {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text"
    return None


def _row_reason(exc: InputError) -> str:
    """The engine's message without its "input N": N counts the rows sent in this call,
    not the file's rows, and the row is named beside the reason."""
    return re.sub(rf"^input(?: {exc.index}|\[{exc.index}\]) ", "the text ", str(exc), count=1)


def errors_path(output: Path) -> Path:
    """Where a job writing `output` lists its bad rows: `vectors.errors.jsonl`."""
    return output.with_name(output.stem + ".errors.jsonl")


def plural(count: int, noun: str) -> str:
    """`1 bad row`, `2 bad rows`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
