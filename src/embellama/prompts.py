"""Query/document prefixes for asymmetric retrieval models, as data: `input_type` in, text out.

Most retrieval models were trained with a prefix or an instruction in front of queries
(and some in front of documents); without it their vectors are measurably worse, and
users of OpenAI-compatible servers end up gluing strings by hand. This module holds the
known families (each row cites its model card), matches a GGUF's metadata against them,
and lets configuration override the table. It never tokenizes: the pipeline does.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embellama.errors import ConfigError, InputError

__all__ = ["KNOWN_FAMILIES", "Family", "InputType", "Prompts", "match_family", "resolve_prompts"]


class InputType(enum.StrEnum):
    QUERY = "query"
    DOCUMENT = "document"

    @classmethod
    def parse(cls, value: str | InputType) -> InputType:
        """Also accepts Cohere's and nomic's names and "passage"."""
        if isinstance(value, InputType):
            return value
        aliased = _ALIASES.get(value.lower()) if isinstance(value, str) else None
        if aliased is None:
            raise InputError(
                f"input_type must be one of {', '.join(sorted(_ALIASES))}, got {value!r}"
            )
        return aliased


_ALIASES = {
    "query": InputType.QUERY,
    "search_query": InputType.QUERY,
    "document": InputType.DOCUMENT,
    "search_document": InputType.DOCUMENT,
    "passage": InputType.DOCUMENT,
}


@dataclass(frozen=True)
class Prompts:
    """What goes in front of a text of each input type; "" means nothing.

    `instruction_template` (with `{instruction}`) replaces `query_prefix` when the caller
    or the configuration gives an instruction, as Qwen3-Embedding expects.
    """

    query_prefix: str = ""
    document_prefix: str = ""
    instruction_template: str | None = None
    default_instruction: str | None = None
    source: str = "configuration"

    def prefix(self, input_type: InputType, instruction: str | None = None) -> str:
        if input_type is InputType.DOCUMENT:
            return self.document_prefix
        task = instruction or self.default_instruction
        if self.instruction_template is not None and task:
            return self.instruction_template.format(instruction=task)
        return self.query_prefix

    def describe(self) -> dict[str, Any]:
        return {
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "instruction_template": self.instruction_template,
            "default_instruction": self.default_instruction,
            "source": self.source,
        }


@dataclass(frozen=True)
class Family:
    """A model family: matched when any `names` substring occurs in the GGUF's name."""

    names: tuple[str, ...]
    prompts: Prompts


_SEARCH = "Represent this sentence for searching relevant passages: "

KNOWN_FAMILIES: tuple[Family, ...] = (
    Family(  # huggingface.co/intfloat/multilingual-e5-large (and the e5 family's cards)
        ("e5-", "e5 "),
        Prompts("query: ", "passage: ", source="intfloat/e5 model cards"),
    ),
    Family(  # huggingface.co/nomic-ai/nomic-embed-text-v1.5
        ("nomic-embed", "nomic embed"),
        Prompts("search_query: ", "search_document: ", source="nomic-ai/nomic-embed-text"),
    ),
    Family(  # huggingface.co/BAAI/bge-large-en-v1.5: the instruction on queries only
        ("bge-small-en", "bge-base-en", "bge-large-en", "bge small en", "bge base en"),
        Prompts(_SEARCH, "", source="BAAI/bge-*-en-v1.5 model cards"),
    ),
    Family(  # huggingface.co/Snowflake/snowflake-arctic-embed-m-v1.5
        ("arctic-embed", "arctic embed"),
        Prompts(_SEARCH, "", source="Snowflake/snowflake-arctic-embed model cards"),
    ),
    Family(  # huggingface.co/mixedbread-ai/mxbai-embed-large-v1
        ("mxbai-embed", "mxbai embed"),
        Prompts(_SEARCH, "", source="mixedbread-ai/mxbai-embed-large-v1"),
    ),
    Family(  # huggingface.co/Qwen/Qwen3-Embedding-0.6B: an instruction for queries
        ("qwen3-embedding", "qwen3 embedding"),
        Prompts(
            "",
            "",
            instruction_template="Instruct: {instruction}\nQuery:",
            default_instruction=(
                "Given a web search query, retrieve relevant passages that answer the query"
            ),
            source="Qwen/Qwen3-Embedding model cards",
        ),
    ),
    Family(  # huggingface.co/google/embeddinggemma-300m
        ("embeddinggemma",),
        Prompts(
            "task: search result | query: ",
            "title: none | text: ",
            source="google/embeddinggemma-300m",
        ),
    ),
)


def match_family(metadata: Mapping[str, Any]) -> Family | None:
    """The family whose name occurs in `general.name`, `general.basename` or the file name."""
    names = " ".join(
        str(metadata.get(key) or "") for key in ("general.name", "general.basename")
    ).lower()
    return next((f for f in KNOWN_FAMILIES if any(n in names for n in f.names)), None)


def resolve_prompts(
    metadata: Mapping[str, Any],
    *,
    query_prefix: str | None = None,
    document_prefix: str | None = None,
    instruction_template: str | None = None,
) -> Prompts | None:
    """Configuration over the table; None when neither says anything."""
    family = match_family(metadata)
    if query_prefix is None and document_prefix is None and instruction_template is None:
        return family.prompts if family else None
    if instruction_template is not None:
        _check_template(instruction_template)
    base = family.prompts if family else Prompts()
    return Prompts(
        query_prefix=base.query_prefix if query_prefix is None else query_prefix,
        document_prefix=base.document_prefix if document_prefix is None else document_prefix,
        instruction_template=instruction_template or base.instruction_template,
        default_instruction=base.default_instruction,
        source="configuration" if family is None else f"configuration over {base.source}",
    )


def _check_template(template: str) -> None:
    """Fail at load, naming the setting: a template that cannot be filled would fail
    every query that uses it instead (`{task}`, a lone `{`, `{0}`). Only the bare field
    is allowed: `{instruction:>999999999}` would build a GB string per query, and
    `{instruction!r}` or `{instruction[0]}` would silently embed something else."""
    if "{instruction}" not in template:
        raise ConfigError("instruction_template must contain '{instruction}'")
    try:
        fields = [
            (name, spec or "", conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise _unfillable(template, str(exc)) from None
    odd = next((f for f in fields if f != ("instruction", "", None)), None)
    if odd is not None:
        name, spec, conversion = odd
        field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        raise _unfillable(template, f"the field {{{field}}}")


def _unfillable(template: str, reason: str) -> ConfigError:
    return ConfigError(
        f"instruction_template {template!r} cannot be filled ({reason}); it may contain "
        "only '{instruction}' as a field (write a literal brace as '{{' or '}}')"
    )
