"""What a caller may ask of one embed or rerank call, checked once, whatever the caller.

The library engine, the HTTP routes and the corpus jobs all build these values, and the
pipeline reads only them, so an option means the same everywhere and is checked in one
place.
"""

from __future__ import annotations

from dataclasses import dataclass

from embellama.config import Truncation
from embellama.errors import InputError
from embellama.prompts import InputType

__all__ = ["EmbedOptions", "RerankOptions"]


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
