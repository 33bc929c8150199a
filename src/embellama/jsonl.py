"""JSON lines in: the one rule for a column named on the command line, before any work.

Shared by `embellama embed`'s JSONL path and the corpus job's reader; no pyarrow here,
so the light install can still read JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from embellama.errors import InputError

__all__ = ["check_jsonl_columns"]


def check_jsonl_columns(path: Path, wanted: Sequence[str], text_column: str, lines: int) -> None:
    """Each `wanted` column must appear in one of the file's first `lines` non-blank
    lines (a JSONL file has no header; these are the lines a job reads its column types
    from): a one-line error before any work, not a job whose every row is bad or whose
    kept column is all null. A line that is a bare string holds the text column."""
    missing = set(wanted)
    with path.open("rb") as handle:
        for raw in islice((line for line in handle if line.strip()), lines):
            missing -= _columns(raw, text_column)
            if not missing:
                return
    if missing:
        names = ", ".join(repr(name) for name in dict.fromkeys(wanted) if name in missing)
        raise InputError(f"{path}: no column {names} in its first {lines} non-blank lines")


def _columns(raw: bytes, text_column: str) -> set[str]:
    try:
        value = json.loads(raw)
    except ValueError:  # not JSON (or not UTF-8): a bad row of its own, no columns
        return set()
    if isinstance(value, dict):
        return set(value)
    return {text_column} if isinstance(value, str) else set()
