"""`POST /v1/rerank` and its aliases: Cohere's and Jina's body (llama-server's too, with
`texts` for `documents`), and the Cohere/Jina answer the `cohere` SDK parses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AliasChoices, Field, PlainValidator, ValidationInfo, WithJsonSchema
from typing_extensions import TypedDict

from embellama.config import Truncation
from embellama.options import RerankOptions
from embellama.server.wire.base import (
    Name,
    OffFlag,
    Positive,
    Says,
    WireModel,
    limit,
    parse,
    refuse,
)

__all__ = [
    "Document",
    "Query",
    "RerankHitBody",
    "RerankRequest",
    "RerankResponse",
    "parse_rerank_request",
]


class Document(TypedDict):
    text: str


def _query(value: object) -> str:
    if not isinstance(value, str):
        raise refuse(
            "'query' is a required property and must be a string",
            code="missing_required_parameter" if value is None else "invalid_value",
        )
    return value


# The query of every rerank body (Cohere's, Jina's, TEI's): a string, never cut.
Query = Annotated[
    str,
    PlainValidator(_query),
    WithJsonSchema({"type": "string"}),
    Says("", missing="'query' is a required property and must be a string"),
]

_NOT_DOCUMENTS = "must be a non-empty list of strings or of objects with 'text'"


def _documents(value: object, info: ValidationInfo) -> list[str]:
    """Counted before any document is read; each is a string or an object with `text`."""
    if not isinstance(value, list) or not value:
        raise refuse(
            "'{param}' " + _NOT_DOCUMENTS,
            code="missing_required_parameter" if value is None else "invalid_value",
            named=True,
        )
    most = limit(info, "max_documents")
    if len(value) > most:
        raise refuse(
            f"too many documents: {len(value)}; this server accepts at most {most} per request"
        )
    documents = []
    for index, item in enumerate(value):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise refuse(
                f"document {index} must be a string or an object with a string 'text'",
                suffix=f"[{index}]",
            )
        documents.append(text)
    return documents


def _truncation(value: object) -> Truncation:
    """Default: cut the document's end, as Cohere and Jina do; false refuses instead."""
    if value is None or value is True or value == "end":
        return Truncation.END
    if value is False or value == "none":
        return Truncation.NONE
    raise refuse(f"'truncate' must be true, false, 'end' or 'none', got {value!r}")


_DOCUMENTS = {
    "description": "Strings, or objects with `text` (llama-server also sends `texts`, "
    "accepted in its place).",
    "type": "array",
    "minItems": 1,
    "items": {
        "oneOf": [
            {"type": "string"},
            {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        ]
    },
}


class RerankRequest(WireModel):
    """Fields are checked in this order; null is the same as leaving a field out."""

    query: Query
    # `documents`, or llama-server's `texts` when no `documents` is sent.
    documents: Annotated[
        list[str],
        PlainValidator(_documents),
        WithJsonSchema(_DOCUMENTS),
        Says("", missing=f"'documents' {_NOT_DOCUMENTS}"),
    ] = Field(validation_alias=AliasChoices("documents", "texts"))
    model: Name = Field(None, description="Name or alias; default: first reranker.")
    top_n: Positive = None
    return_documents: OffFlag = False
    raw_scores: OffFlag = Field(
        False, description="Extension: the classifier's logit instead of its sigmoid."
    )
    truncate: Annotated[
        Truncation,
        PlainValidator(_truncation),
        WithJsonSchema(
            {
                "description": "Extension: a pair over the context loses the document's "
                "end (true, default) or is refused (false). The query is never cut.",
                "oneOf": [{"type": "boolean"}, {"enum": ["none", "end"]}],
            }
        ),
    ] = Truncation.END
    max_tokens_per_doc: Positive = None

    def options(self) -> RerankOptions:
        return RerankOptions(
            top_n=self.top_n, truncate=self.truncate, max_tokens_per_doc=self.max_tokens_per_doc
        )


def parse_rerank_request(body: Mapping[str, Any], *, max_documents: int) -> RerankRequest:
    return parse(RerankRequest, body, {"max_documents": max_documents})


class RerankHitBody(TypedDict):
    index: int
    relevance_score: float
    document: NotRequired[Document]
    truncated: NotRequired[Literal[True]]


class RerankUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class MetaTokens(TypedDict):
    input_tokens: int
    output_tokens: int


class RerankMeta(TypedDict):
    tokens: MetaTokens


class RerankResponse(TypedDict):
    id: str
    object: Literal["list"]
    model: str
    # Sorted by relevance_score, best first; top_n of them.
    results: list[RerankHitBody]
    usage: RerankUsage
    meta: RerankMeta
