"""What a caller may ask of one embed or rerank call, checked once, whatever the caller.

The library engine, the HTTP routes and the corpus jobs all build these values, and the
pipeline reads only them, so an option means the same everywhere and is checked in one
place. A caller passing keywords (`truncate=True`, `input_type="query"`) goes through
`from_keywords`, the only code that turns those forms into the typed fields: a new
option is one field in the dataclass and one key in its `...Keywords` twin here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from embellama.config import Truncation
from embellama.errors import InputError
from embellama.prompts import InputType
from embellama.vectors import Quantization

__all__ = [
    "EmbedKeywords",
    "EmbedOptions",
    "QuantizeArg",
    "RerankKeywords",
    "RerankOptions",
    "TruncateArg",
    "parse_input_type",
    "parse_quantize",
]

# The forms a caller may write for `truncate`: False/None (fail), True ("end"), a name.
TruncateArg = bool | str | Truncation | None
# One integer form ("int8", "uint8", "binary", "ubinary"), several, or None (floats only).
QuantizeArg = str | Quantization | tuple[str | Quantization, ...] | list[str] | None


class EmbedKeywords(TypedDict, total=False):
    """The keywords of every embed call (`engine.embed(..., **options)`), as callers
    write them; `EmbedOptions` holds the same names, parsed. Defaults are the dataclass's."""

    # None: the model's configured normalization; False: none; True: on (L2 if it had none).
    normalize: bool | None
    # Matryoshka cut to the first N dimensions, renormalized.
    dimensions: int | None
    # An input over the context: False/None fails, True/"end" or "start" cuts that end,
    # "chunk" embeds overlapping windows and returns their token-weighted mean.
    truncate: TruncateArg
    use_cache: bool
    # "query" / "document" (also "search_query", "search_document", "passage"): puts the
    # model's prefix for that role in front of each text.
    input_type: str | InputType | None
    instruction: str | None
    chunk_overlap: int
    # Also compute these integer forms of the vectors (vectors.py): the result's
    # `codes("int8")` etc.; int8/uint8 use the model's calibrated ranges.
    quantize: QuantizeArg


class RerankKeywords(TypedDict, total=False):
    """The keywords of a rerank call; `RerankOptions` holds the same names, parsed, and
    `top_n`, which callers pass by position (`rerank(query, documents, 3)`)."""

    # True/"end" (default): a pair over the context loses the document's end; False: refused.
    truncate: TruncateArg
    max_tokens_per_doc: int | None


def parse_input_type(value: str | InputType | None) -> InputType | None:
    return None if value is None else InputType.parse(value)


def parse_quantize(value: QuantizeArg) -> tuple[Quantization, ...]:
    """Each named form once, in the order given."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else list(value)
    kinds: list[Quantization] = []
    for name in names:
        if not isinstance(name, str) or name not in tuple(Quantization):
            choices = ", ".join(kind.value for kind in Quantization)
            raise InputError(f"quantize must name {choices}; got {name!r}", param="quantize")
        if Quantization(name) not in kinds:
            kinds.append(Quantization(name))
    return tuple(kinds)


def _check_overlap(value: int) -> int:
    if value < 0:
        raise InputError(f"chunk_overlap must be >= 0, got {value}")
    return value


# How a keyword's caller-facing form becomes its field's type; a field not named here
# is taken as given. Checked in this order, before the dataclass's own checks.
_EMBED_PARSERS: dict[str, Callable[[Any], object]] = {
    "chunk_overlap": _check_overlap,
    "truncate": Truncation.parse,
    "input_type": parse_input_type,
    "quantize": parse_quantize,
}
_RERANK_PARSERS: dict[str, Callable[[Any], object]] = {"truncate": Truncation.parse}


def _parsed(
    fields: list[str],
    keywords: Mapping[str, object],
    parsers: dict[str, Callable[[Any], object]],
) -> dict[str, Any]:
    """`keywords` with each value in its field's type; an unknown name is a TypeError,
    as it was when every option was spelled out in the engine's signatures."""
    unknown = [name for name in keywords if name not in fields]
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r}; the options are: {', '.join(fields)}"
        )
    values = dict(keywords)
    for name, parse in parsers.items():
        if name in values:
            values[name] = parse(values[name])
    return values


def _field_names(cls: type[EmbedOptions | RerankOptions]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


@dataclass(frozen=True)
class EmbedOptions:
    normalize: bool | None = None
    dimensions: int | None = None
    truncate: Truncation = Truncation.NONE
    # False: neither read nor fill the cache for this call (a caller checking freshness).
    use_cache: bool = True
    # Retrieval role of the texts: selects the model's query or document prefix.
    input_type: InputType | None = None
    # Fills an instruction template (Qwen3-Embedding style) in front of queries.
    instruction: str | None = None
    # truncate="chunk": tokens each window shares with the one before.
    chunk_overlap: int = 0
    # Integer forms to compute besides the floats (EmbeddingResult.quantized).
    quantize: tuple[Quantization, ...] = ()

    def __post_init__(self) -> None:
        # An option that would silently do nothing is refused: the caller meant something.
        if self.instruction is not None and self.input_type is None:
            raise InputError(
                "'instruction' fills the query prefix and needs input_type='query'",
                param="instruction",
            )
        if self.chunk_overlap and self.truncate is not Truncation.CHUNK:
            raise InputError(
                "'chunk_overlap' applies only with truncate='chunk'", param="chunk_overlap"
            )

    @classmethod
    def from_keywords(cls, keywords: EmbedKeywords) -> EmbedOptions:
        """The options of a call written with keywords, in any form `EmbedKeywords` takes."""
        return cls(**_parsed(_field_names(cls), keywords, _EMBED_PARSERS))


@dataclass(frozen=True)
class RerankOptions:
    top_n: int | None = None
    # A pair over the context: cut the document's end ("end", the default, as Cohere and
    # Jina do) or refuse the request ("none"). The query is never cut.
    truncate: Truncation = Truncation.END
    max_tokens_per_doc: int | None = None

    def __post_init__(self) -> None:
        if self.truncate not in (Truncation.NONE, Truncation.END):
            raise InputError(
                f"truncate={self.truncate.value!r} does not apply to rerank; a pair is cut "
                "at the document's end (true/'end') or refused (false/'none')",
                param="truncate",
            )
        if self.top_n is not None and self.top_n < 1:
            raise InputError(f"top_n must be >= 1, got {self.top_n}", param="top_n")
        if self.max_tokens_per_doc is not None and self.max_tokens_per_doc < 1:
            raise InputError(
                f"max_tokens_per_doc must be >= 1, got {self.max_tokens_per_doc}",
                param="max_tokens_per_doc",
            )

    @classmethod
    def from_keywords(cls, keywords: RerankKeywords, top_n: int | None = None) -> RerankOptions:
        values = _parsed(_field_names(cls), keywords, _RERANK_PARSERS)
        return cls(top_n=top_n, **values)
