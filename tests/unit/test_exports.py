"""The public API is exactly what __all__ says, sorted."""

from __future__ import annotations

import embellama


def test_all_is_sorted_and_exists() -> None:
    names = embellama.__all__
    # Constants, then classes, then functions, each alphabetical (ruff RUF022).
    assert names == sorted(
        names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    for name in names:
        assert hasattr(embellama, name), name
