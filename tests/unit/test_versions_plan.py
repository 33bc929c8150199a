"""Declaring model versions in a config file: `[[models]]` entries sharing a name, each
with its `version` and `weight`, checked when the plan is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from embellama import ConfigError
from embellama.cli.plan import load_plan, model_spec_from_fields
from embellama.cli.serve import parse_serve_args


def plan_of(tmp_path: Path, entries: str) -> list[tuple[str, str, float | None]]:
    config = tmp_path / "embellama.toml"
    config.write_text(entries)
    plan = load_plan(parse_serve_args([]), config)
    return [(s.config.resolved_name, s.config.served_version, s.config.weight) for s in plan.models]


def entry(path: Path, name: object = "m", **fields: object) -> str:
    lines = [f'name = "{name}"', f'path = "{path}"']
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in fields.items()]
    return "[[models]]\n" + "\n".join(lines) + "\n"


def test_entries_sharing_a_name_are_versions_weighted_100_then_0(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    text = entry(minilm_gguf) + entry(minilm_gguf, version="v2")
    assert plan_of(tmp_path, text) == [("m@1", "1", 100.0), ("m@v2", "v2", 0.0)]
    text = entry(minilm_gguf, version="a", weight=90) + entry(minilm_gguf, version="b", weight=10)
    assert plan_of(tmp_path, text) == [("m@a", "a", 90.0), ("m@b", "b", 10.0)]


def test_an_only_entry_keeps_its_plain_name(minilm_gguf: Path, tmp_path: Path) -> None:
    assert plan_of(tmp_path, entry(minilm_gguf)) == [("m", "1", None)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (({"version": "v1"}, {"version": "v1"}), "used twice: m@v1"),
        (({}, {}), "used twice: m@1"),
        (({"weight": 0}, {"version": "v2"}), "weights summing to 0"),
        (({"weight": -5}, {"version": "v2"}), "must be a number >= 0"),
        (({"version": "a@b"}, {"version": "v2"}), "model version must be"),
        (({"version": ""}, {"version": "v2"}), "model version must be"),
    ],
)
def test_bad_versions_and_weights_are_refused(
    minilm_gguf: Path, tmp_path: Path, fields: tuple[dict[str, object], ...], message: str
) -> None:
    text = "".join(entry(minilm_gguf, **f) for f in fields)
    with pytest.raises(ConfigError, match=message):
        plan_of(tmp_path, text)


def test_a_versions_name_is_not_another_models(minilm_gguf: Path, tmp_path: Path) -> None:
    text = entry(minilm_gguf, version="v1") + entry(minilm_gguf, name="x", aliases=["m"])
    with pytest.raises(ConfigError, match="used twice: m"):
        plan_of(tmp_path, text)
    # The aliases of a name's versions are the name's: repeating them is no clash.
    text = entry(minilm_gguf, version="v1", aliases=["a"]) + entry(
        minilm_gguf, version="v2", aliases=["a"]
    )
    assert [name for name, _, _ in plan_of(tmp_path, text)] == ["m@v1", "m@v2"]


def test_the_admin_api_takes_version_and_weight_as_json(minilm_gguf: Path) -> None:
    server = load_plan(parse_serve_args(["--model-path", str(minilm_gguf)]), None).server
    spec = model_spec_from_fields("m", {"path": str(minilm_gguf), "version": "v2"}, server)
    assert (spec.config.resolved_name, spec.config.weight) == ("m@v2", None)
    with pytest.raises(ConfigError, match="'weight' must be a number"):
        model_spec_from_fields("m", {"path": str(minilm_gguf), "weight": "10"}, server)
    with pytest.raises(ConfigError, match="'version' must be a string"):
        model_spec_from_fields("m", {"path": str(minilm_gguf), "version": 2}, server)
