"""JSON lines in: one value per non-blank line, a bad line named by file and number.

Shared by `embellama embed`'s JSONL path and the corpus job's reader; no pyarrow here,
so the light install can still read JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from embellama.errors import InputError

__all__ = ["json_lines"]


def json_lines(lines: Iterable[str], name: object) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line of `lines`."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: not valid JSON ({exc.msg})") from exc
