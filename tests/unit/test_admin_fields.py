"""Admin API model bodies go through the same option table as flags and TOML, and being
JSON they are type-checked too: nothing is coerced into a different model."""

from __future__ import annotations

from typing import Any

import pytest

from embellama import ConfigError
from embellama.cli.options import SERVER_OPTIONS, resolve
from embellama.cli.plan import model_spec_from_fields

SERVER = resolve(None, SERVER_OPTIONS, environ={})


def test_booleans_and_kind() -> None:
    """JSON true/false for switches (`add_eos`, `allow_unverified_architecture`), and the
    model kind a load must find."""
    plan = model_spec_from_fields(
        "reranker",
        {
            "path": "/models/r.gguf",
            "add_eos": True,
            "allow_unverified_architecture": True,
            "kind": "rerank",
        },
        SERVER,
    )
    assert plan.config.add_eos is True and plan.config.allow_unverified_architecture
    assert plan.config.kind is not None and plan.config.kind.value == "rerank"


def test_a_valid_body() -> None:
    plan = model_spec_from_fields(
        "extra",
        {"path": "/models/m.gguf", "aliases": ["x"], "n_ctx": 128, "workers": 2, "norm_p": 3},
        SERVER,
    )
    assert plan.config.resolved_name == "extra"
    assert plan.config.aliases == ("x",)
    assert plan.config.n_ctx == 128
    assert plan.limits.workers == 2
    assert plan.limits.max_queued_requests == SERVER["queue_size"]
    assert plan.config.cache_version is None


def test_cache_version_from_a_body() -> None:
    fields = {"path": "/models/m.gguf", "cache_version": "bge-m3-2024-06"}
    plan = model_spec_from_fields("extra", fields, SERVER)
    assert plan.config.cache_version == "bge-m3-2024-06"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path": "/m.gguf", "n_ctx": "8"}, "'n_ctx' must be an integer"),
        ({"path": "/m.gguf", "aliases": "abc"}, "'aliases' must be a list of strings"),
        ({"path": "/m.gguf", "threads_per_worker": 1.5}, "must be an integer"),
        ({"path": "/m.gguf", "workers": True}, "must be an integer"),
        ({"path": "/m.gguf", "workers": 0}, "must be >= 1"),
        ({"path": "/m.gguf", "n_ctx": -3}, "must be >= 1"),
        ({"path": "/m.gguf", "pooling": "median"}, "choose from"),
        ({"path": "/m.gguf", "colour": "red"}, "unknown key"),
        ({"path": "/m.gguf", "add_eos": "yes"}, "'add_eos' must be true or false"),
        ({"path": "/m.gguf", "kind": "classifier"}, "choose from"),
        ({"path": "/m.gguf", "name": "other"}, "comes from the URL"),
        ({"path": "/m.gguf", "cache_version": 2}, "'cache_version' must be a string"),
        ({"path": "/m.gguf", "cache_version": " "}, "cache_version must not be empty"),
        ({"aliases": ["x"]}, "'path' is required"),
        (["/m.gguf"], "must be a JSON object"),
    ],
)
def test_bad_bodies_are_refused(fields: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_spec_from_fields("extra", fields, SERVER)
