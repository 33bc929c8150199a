"""TEI's API (text-embeddings-inference: `/embed`, `/embed_all`, `/rerank` with `texts`,
`POST /`, `/tokenize` with `inputs`, `/decode`): its request bodies, translated into the pipeline's options, and its answers.
Field names and defaults follow TEI's router (`router/src/http/types.rs`).

As TEI: `normalize` defaults to true, `truncate` to false (an input over the context is
a 413), `truncation_direction` is `Right` (cut the end) or `Left` (cut the start),
`prompt_name` picks the model's prompt (`query`, `document`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, NotRequired

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema, model_validator
from typing_extensions import TypedDict

from embellama.config import Truncation
from embellama.errors import InputError
from embellama.inputs import InputItem, TokenArray, token_array
from embellama.model.offsets import MAX_ALIGNED_CHARACTERS
from embellama.options import EmbedOptions, RerankOptions
from embellama.prompts import InputType
from embellama.server.wire.base import (
    Name,
    OffFlag,
    OnFlag,
    Positive,
    Says,
    WireModel,
    limit,
    parse,
    refuse,
)
from embellama.server.wire.rerank import Query

__all__ = [
    "TeiDecodeRequest",
    "TeiEmbedAllRequest",
    "TeiEmbedRequest",
    "TeiInfo",
    "TeiRank",
    "TeiRerankRequest",
    "TeiToken",
    "TeiTokenizeRequest",
    "is_tei_rerank",
    "is_tei_tokenize",
    "parse_tei_decode",
    "parse_tei_embed",
    "parse_tei_embed_all",
    "parse_tei_rerank",
    "parse_tei_tokenize",
]

_INPUTS_SCHEMA = {
    "description": "A string or a list of strings; at most `max_client_batch_size` (/info).",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
    ],
}


def _inputs(raw: object, info: ValidationInfo) -> list[InputItem]:
    """TEI's `inputs`: counted before any is read; none at all is TEI's `Empty` (400),
    more than the server takes its 413."""
    if isinstance(raw, list) and not raw:
        raise refuse("`inputs` cannot be empty", code="empty_input")
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise refuse("'inputs' must be a string or a list of strings")
    most = limit(info, "max_inputs")
    if len(raw) > most:
        raise refuse(
            f"batch size {len(raw)} > maximum allowed batch size {most}", code="too_many_inputs"
        )
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise refuse(f"input {index} must be a string", suffix=f"[{index}]")
    return list(raw)


def _direction(value: object) -> str:
    """`Left` or `Right` as TEI writes them; `left`/`right` as huggingface_hub sends them."""
    if value is None:
        return "right"
    if isinstance(value, str) and value.lower() in ("left", "right"):
        return value.lower()
    raise refuse(f"'truncation_direction' must be 'Left' or 'Right', got {value!r}")


def _prompt(value: object) -> InputType | None:
    if value is None:
        return None
    try:
        return InputType.parse(value if isinstance(value, str) else repr(value))
    except InputError as exc:
        raise refuse(f"'prompt_name' {value!r} is not a prompt of this server: {exc}") from None


_DIRECTION_SCHEMA = {"enum": ["Left", "Right", "left", "right", None]}
_PROMPT_SCHEMA = {
    "description": "The model's prompt to put in front of each input.",
    "enum": ["query", "document", "search_query", "search_document", "passage", None],
}


class _TeiInputs(WireModel):
    inputs: Annotated[
        list[InputItem],
        PlainValidator(_inputs),
        WithJsonSchema(_INPUTS_SCHEMA),
        Says("", missing="'inputs' is a required property"),
    ]
    truncate: OffFlag = Field(False, description="true cuts an input over the context.")
    truncation_direction: Annotated[
        str, PlainValidator(_direction), WithJsonSchema(_DIRECTION_SCHEMA)
    ] = "right"
    prompt_name: Annotated[
        InputType | None, PlainValidator(_prompt), WithJsonSchema(_PROMPT_SCHEMA)
    ] = None
    model: Name = Field(None, description="Extension: name or alias; default: first model.")

    @property
    def truncation(self) -> Truncation:
        if not self.truncate:
            return Truncation.NONE
        return Truncation.START if self.truncation_direction == "left" else Truncation.END


class TeiEmbedRequest(_TeiInputs):
    """`POST /embed` (and `POST /` with `inputs`)."""

    normalize: OnFlag = True
    dimensions: Positive = None

    def options(self, *, use_cache: bool = True) -> EmbedOptions:
        return EmbedOptions(
            normalize=self.normalize,
            dimensions=self.dimensions,
            truncate=self.truncation,
            use_cache=use_cache,
            input_type=self.prompt_name,
        )


class TeiEmbedAllRequest(_TeiInputs):
    """`POST /embed_all`: every token's vector, as the model computed it (not normalized)."""

    def options(self) -> EmbedOptions:
        return EmbedOptions(normalize=False, truncate=self.truncation, input_type=self.prompt_name)


def parse_tei_embed(body: Mapping[str, Any], *, max_inputs: int) -> TeiEmbedRequest:
    return parse(TeiEmbedRequest, body, {"max_inputs": max_inputs})


def parse_tei_embed_all(body: Mapping[str, Any], *, max_inputs: int) -> TeiEmbedAllRequest:
    return parse(TeiEmbedAllRequest, body, {"max_inputs": max_inputs})


def is_tei_rerank(body: Mapping[str, Any]) -> bool:
    """TEI's rerank body carries `texts` and no `documents` (Cohere's and Jina's do)."""
    return "texts" in body and "documents" not in body


def _texts(value: object, info: ValidationInfo) -> list[str]:
    if isinstance(value, list) and not value:
        raise refuse("`texts` cannot be empty", code="empty_input")
    if not isinstance(value, list):
        raise refuse("'texts' must be a list of strings")
    most = limit(info, "max_inputs")
    if len(value) > most:
        raise refuse(
            f"batch size {len(value)} > maximum allowed batch size {most}",
            code="too_many_inputs",
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise refuse(f"text {index} must be a string", suffix=f"[{index}]")
    return list(value)


class TeiRerankRequest(WireModel):
    """`POST /rerank` (and `POST /`) in TEI's shape: `query` and `texts`."""

    query: Query
    texts: Annotated[
        list[str],
        PlainValidator(_texts),
        WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1}),
        Says("", missing="'texts' is a required property"),
    ]
    truncate: OffFlag = Field(
        False, description="true cuts a pair over the context at the text's end."
    )
    raw_scores: OffFlag = Field(False, description="The classifier's logit, not its sigmoid.")
    return_text: OffFlag = False
    model: Name = Field(None, description="Extension: name or alias; default: first reranker.")

    def options(self) -> RerankOptions:
        return RerankOptions(truncate=Truncation.END if self.truncate else Truncation.NONE)


def parse_tei_rerank(body: Mapping[str, Any], *, max_inputs: int) -> TeiRerankRequest:
    return parse(TeiRerankRequest, body, {"max_inputs": max_inputs})


def is_tei_tokenize(body: Mapping[str, Any]) -> bool:
    """TEI's tokenize body carries `inputs`; llama-server's carries `content` (and keeps
    its shape, whatever else it holds)."""
    return "inputs" in body and "content" not in body


class TeiTokenizeRequest(WireModel):
    """`POST /tokenize` in TEI's shape: each input's tokens with their character spans.
    Special-token text in an input ("[SEP]") stays text, as /embed reads it."""

    inputs: Annotated[
        list[InputItem],
        PlainValidator(_inputs),
        WithJsonSchema(_INPUTS_SCHEMA),
        Says("", missing="'inputs' is a required property"),
    ]
    add_special_tokens: OnFlag = True
    prompt_name: Annotated[
        InputType | None,
        PlainValidator(_prompt),
        WithJsonSchema(
            {
                **_PROMPT_SCHEMA,
                "description": "The prompt /embed puts in front; its tokens are listed, "
                "and offsets count from the prompt's start, as TEI.",
            }
        ),
    ] = None
    model: Name = Field(None, description="Extension: name or alias; default: first model.")

    @model_validator(mode="after")
    def _alignable(self) -> TeiTokenizeRequest:
        """Offsets are found in Python over the folded text: bounded per request."""
        total = sum(len(text) for text in self.texts)
        if total > MAX_ALIGNED_CHARACTERS:
            raise refuse(
                f"the inputs hold {total} characters; /tokenize with spans takes at most "
                f"{MAX_ALIGNED_CHARACTERS} per request",
                code="request_too_large",
                status=413,
                param="inputs",
            )
        return self

    @property
    def texts(self) -> list[str]:
        return [item for item in self.inputs if isinstance(item, str)]

    def options(self) -> EmbedOptions:
        return EmbedOptions(input_type=self.prompt_name)


def parse_tei_tokenize(body: Mapping[str, Any], *, max_inputs: int) -> TeiTokenizeRequest:
    return parse(TeiTokenizeRequest, body, {"max_inputs": max_inputs})


_NOT_ID_LISTS = "'ids' must be a list of token ids (integers), or a list of such lists"


def _id_lists(value: object, info: ValidationInfo) -> list[TokenArray]:
    """TEI's `ids`: one list of ids, or a list of them; none at all is TEI's `Empty`."""
    if not isinstance(value, list):
        raise refuse(_NOT_ID_LISTS)
    if not value:
        raise refuse("`ids` cannot be empty", code="empty_input")
    single = token_array(value)
    lists = [single] if single is not None else _each_ids(value, limit(info, "max_inputs"))
    total, most = sum(len(ids) for ids in lists), limit(info, "max_tokens")
    if total > most:
        raise refuse(
            f"'ids' has {total} ids; this server accepts at most {most} per request",
            status=413,
            code="too_many_tokens",
        )
    return lists


def _each_ids(value: list[object], most: int) -> list[TokenArray]:
    if len(value) > most:
        raise refuse(
            f"batch size {len(value)} > maximum allowed batch size {most}", code="too_many_inputs"
        )
    lists = []
    for index, item in enumerate(value):
        ids = token_array(item) if isinstance(item, list) else None
        if ids is None:
            raise refuse(_NOT_ID_LISTS, suffix=f"[{index}]")
        lists.append(ids)
    return lists


_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}}


class TeiDecodeRequest(WireModel):
    """`POST /decode`: token ids back to text, one string per id list."""

    ids: Annotated[
        list[TokenArray],
        PlainValidator(_id_lists),
        WithJsonSchema(
            {
                "description": "Ids, or a list of id lists (at most `max_client_batch_size`); "
                "at most `max_tokenize_tokens` ids in all (/info).",
                "oneOf": [{**_IDS, "minItems": 1}, {"type": "array", "items": _IDS, "minItems": 1}],
            }
        ),
        Says(_NOT_ID_LISTS, missing="'ids' is a required property"),
    ]
    skip_special_tokens: OnFlag = True
    model: Name = Field(None, description="Extension: name or alias; default: first model.")


def parse_tei_decode(
    body: Mapping[str, Any], *, max_inputs: int, max_tokens: int
) -> TeiDecodeRequest:
    return parse(TeiDecodeRequest, body, {"max_inputs": max_inputs, "max_tokens": max_tokens})


class TeiToken(TypedDict):
    """One token of TEI's /tokenize: `text` is the input's slice [start, stop)
    (characters); a token the tokenizer added has its own text and null offsets."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class TeiRank(TypedDict):
    index: int
    score: float
    text: NotRequired[str]


class TeiInfo(TypedDict):
    """TEI's /info keys; /info answers them beside embellama's own."""

    model_id: str
    model_sha: str | None
    model_dtype: str
    model_type: dict[str, object]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: str | None
    docker_label: str | None
