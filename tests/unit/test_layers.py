"""Imports point down: each package of embellama imports only from layers below its own.

The layers, lowest first, are the shape the code is meant to keep: plain values at the
bottom, llama.cpp and the cache above them, then where decodes run, the one pipeline, the
engine, the corpus jobs, the HTTP server, and the entry points (CLI, Ray) on top. An
arrow that points up (the engine importing the server, the CLI imported by the corpus
job) is a loop waiting to happen; this test names it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import embellama

PACKAGE = Path(embellama.__file__).parent

LAYERS: list[set[str]] = [
    {"errors"},
    {"config", "inputs", "prompts", "jsonl", "loop_thread", "vectors", "results", "routing"},
    {"calibration", "signing", "stages"},
    {"options", "model", "cache", "registry"},
    {"backends", "default_model"},
    {"batching"},
    {"pipeline"},
    {"engine"},
    {"rows", "corpus"},
    {"server"},
    {"cli"},
    {"ray", "__main__", "__init__"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> list[str]:
    """`server/routes/rerank.py` -> ["server", "routes", "rerank"]; the package's own
    `__init__.py` -> ["__init__"]."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts


def _imports(path: Path) -> Iterator[list[str]]:
    """Every embellama module `path` imports (TYPE_CHECKING imports included: a type
    arrow that points up is an arrow too), as dotted parts below `embellama`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "embellama" and len(parts) > 1:
                yield parts[1:]


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    tops = {_module(path)[0] for path in _sources()}
    assert tops - set(LAYER) == set(), "add the new package to LAYERS"


def test_no_import_points_up() -> None:
    upward = []
    for path in _sources():
        importer = _module(path)[0]
        for imported in _imports(path):
            top = imported[0]
            if top in LAYER and LAYER[top] > LAYER[importer]:
                upward.append(f"{path.relative_to(PACKAGE)} imports embellama.{'.'.join(imported)}")
    assert upward == []


def test_routes_never_import_each_other() -> None:
    """What two routes share (admission, encoders) lives beside them, not in a route."""
    crossing = []
    for path in sorted((PACKAGE / "server" / "routes").glob("*.py")):
        own = _module(path)
        for imported in _imports(path):
            if imported[:2] == ["server", "routes"] and len(imported) > 2 and imported != own:
                crossing.append(f"{path.name} imports {'.'.join(imported)}")
    assert crossing == []
