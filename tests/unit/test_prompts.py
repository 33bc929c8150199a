"""Query/document prefixes as data: aliases, family matching, configuration overrides."""

from __future__ import annotations

import pytest

from embellama import ConfigError, InputError
from embellama.prompts import InputType, Prompts, match_family, resolve_prompts


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("query", InputType.QUERY),
        ("search_query", InputType.QUERY),
        ("document", InputType.DOCUMENT),
        ("search_document", InputType.DOCUMENT),
        ("PASSAGE", InputType.DOCUMENT),
    ],
)
def test_input_type_names(given: str, parsed: InputType) -> None:
    assert InputType.parse(given) is parsed


def test_unknown_input_type() -> None:
    with pytest.raises(InputError, match="input_type must be one of"):
        InputType.parse("classification")


@pytest.mark.parametrize(
    ("name", "query", "document"),
    [
        ("multilingual-e5-large", "query: ", "passage: "),
        ("Nomic Embed Text V1.5", "search_query: ", "search_document: "),
        ("bge-large-en-v1.5", "Represent this sentence for searching relevant passages: ", ""),
        ("embeddinggemma-300m", "task: search result | query: ", "title: none | text: "),
    ],
)
def test_known_families(name: str, query: str, document: str) -> None:
    prompts = resolve_prompts({"general.name": name})
    assert prompts is not None
    assert prompts.prefix(InputType.QUERY) == query
    assert prompts.prefix(InputType.DOCUMENT) == document


def test_instruction_template_for_qwen3() -> None:
    prompts = resolve_prompts({"general.basename": "Qwen3-Embedding"})
    assert prompts is not None
    assert prompts.prefix(InputType.QUERY, "Find code") == "Instruct: Find code\nQuery:"
    assert prompts.prefix(InputType.QUERY).startswith("Instruct: Given a web search query")
    assert prompts.prefix(InputType.DOCUMENT) == ""


def test_no_family_and_no_configuration() -> None:
    assert match_family({"general.name": "MiniLM L6 H384 Uncased"}) is None
    assert resolve_prompts({"general.name": "MiniLM L6 H384 Uncased"}) is None


def test_configuration_overrides_the_table() -> None:
    prompts = resolve_prompts({"general.name": "multilingual-e5-small"}, query_prefix="q: ")
    assert prompts == Prompts(
        "q: ", "passage: ", source="configuration over intfloat/e5 model cards"
    )
    with pytest.raises(ConfigError, match="instruction"):
        resolve_prompts({}, instruction_template="no placeholder")


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("Instruct: {instruction} {", "Single '{'"),
        ("{instruction} {task}", "{task}"),
        ("{0}: {instruction}", "{0}"),
        ("{}{instruction}", "{}"),
        ("{instruction}{instruction:>999999999}", "{instruction:>999999999}"),
        ("{instruction!r} {instruction}", "{instruction!r}"),
        ("{instruction[0]} {instruction}", "{instruction[0]}"),
    ],
)
def test_a_template_that_cannot_be_filled_as_is_fails_naming_it(template: str, named: str) -> None:
    """Only the bare field: a width would build a huge string per query, a conversion or
    an index would embed something other than the instruction."""
    with pytest.raises(ConfigError, match="instruction_template") as refused:
        resolve_prompts({}, instruction_template=template)
    assert named in str(refused.value)


def test_literal_braces_are_allowed_in_a_template() -> None:
    prompts = resolve_prompts({}, instruction_template="{{json}} Instruct: {instruction}")
    assert prompts is not None
    assert prompts.prefix(InputType.QUERY, "find {x}") == "{json} Instruct: find {x}"
