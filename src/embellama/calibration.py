"""The texts int8/uint8 ranges are calibrated on: a built-in set, or an operator's file.

Scalar quantization maps each dimension's [min, max] over these texts' vectors onto 256
steps; the ranges must be the same for every vector a model serves, so they come from a
fixed text set, never from the request being answered. This module only provides texts:
the pipeline embeds them (pipeline.py) and vectors.py turns the vectors into ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

from embellama.errors import ConfigError

__all__ = [
    "BUILTIN_TEXTS",
    "MAX_CALIBRATION_TEXTS",
    "MIN_CALIBRATION_TEXTS",
    "CalibrationSet",
    "calibration_set",
]

# 24 subjects from everyday retrieval domains (science, law, cooking, code, travel, health,
# finance, sport, ...) in four forms each: a keyword query, a question, a statement and a
# note, the mix of queries and passages a search index holds. 96 short texts embed in
# ~0.1-0.3 s on a 2-core CPU with MiniLM, so a first quantized call stays cheap.
_SUBJECTS = (
    "the boiling point of water at high altitude",
    "how vaccines train the immune system",
    "renewing a passport before an international trip",
    "a recipe for sourdough bread with a long cold proof",
    "sorting a list of records by two keys in Python",
    "the causes of inflation after an energy price shock",
    "tenant rights when a landlord keeps the deposit",
    "training for a first marathon in sixteen weeks",
    "why the sky looks red at sunset",
    "repairing a leaking kitchen faucet",
    "the history of the printing press in Europe",
    "symptoms of iron deficiency in adults",
    "choosing a laptop for video editing",
    "photosynthesis in desert plants",
    "the rules of offside in football",
    "configuring a firewall on a home router",
    "migratory routes of arctic terns",
    "compound interest on a retirement account",
    "writing a cover letter for a nursing job",
    "the plot of a classic detective novel",
    "reducing food waste in a restaurant kitchen",
    "earthquake safety in tall buildings",
    "learning to play chords on the guitar",
    "the orbit of the moon and ocean tides",
)
_FORMS = (
    "{subject}",
    "What should I know about {subject}?",
    "This article explains {subject}, with examples and common mistakes.",
    "Notes: {subject}. See also related questions and further reading.",
)
BUILTIN_TEXTS: tuple[str, ...] = tuple(
    form.format(subject=subject) for subject, form in product(_SUBJECTS, _FORMS)
)

# Fewer texts give ranges that clip ordinary vectors; more only cost load time.
MIN_CALIBRATION_TEXTS = 16
MAX_CALIBRATION_TEXTS = 10_000


@dataclass(frozen=True)
class CalibrationSet:
    texts: tuple[str, ...]
    # "built-in" or the file's path: shown beside the ranges in /v1/models/{id}.
    source: str


def calibration_set(path: Path | None) -> CalibrationSet:
    """The built-in set, or the non-blank lines of `path` (one text per line, UTF-8).

    Read when the model loads, so a missing or unusable file fails the load, naming it."""
    if path is None:
        return CalibrationSet(BUILTIN_TEXTS, "built-in")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"calibration_file {str(path)!r} cannot be read: {exc}") from None
    texts = tuple(line.strip() for line in lines if line.strip())
    if not MIN_CALIBRATION_TEXTS <= len(texts) <= MAX_CALIBRATION_TEXTS:
        raise ConfigError(
            f"calibration_file {str(path)!r} has {len(texts)} non-blank lines; it needs "
            f"{MIN_CALIBRATION_TEXTS} to {MAX_CALIBRATION_TEXTS} texts, one per line"
        )
    return CalibrationSet(texts, str(path))
