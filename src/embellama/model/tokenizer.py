"""Turn parsed inputs into checked token ids that fit the model's context.

Everything that would make llama.cpp abort (bad UTF-8, ids outside the vocabulary)
or fail (too long) is caught here, with the input's index in the message. Every public
call holds a lease on the model, so an unload cannot free the vocabulary under it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from embellama.config import Truncation
from embellama.errors import (
    EmptyInputError,
    InputError,
    InputTooLongError,
    InvalidTextError,
    InvalidTokenError,
    TokenLimitError,
)
from embellama.inputs import InputItem
from embellama.model.lease import Leases
from embellama.model.native import NativeModel, TokenIds
from embellama.model.offsets import Span, align_pieces

__all__ = [
    "PREFIX_MEMO_SIZE",
    "Chunking",
    "TokenPieces",
    "TokenSpans",
    "TokenizedInput",
    "Tokenizer",
]

# Tokens a window edge may add to a count (a word split in two).
_WINDOW_MARGIN = 16
# Distinct prefixes whose token count is remembered (least recently used dropped first).
PREFIX_MEMO_SIZE = 64

P = ParamSpec("P")
R = TypeVar("R")


def _leased(
    method: Callable[Concatenate[Tokenizer, P], R],
) -> Callable[Concatenate[Tokenizer, P], R]:
    """Hold the model's lease for the whole call: the vocabulary lives until it returns."""

    @functools.wraps(method)
    def call(self: Tokenizer, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.leases.hold():
            return method(self, *args, **kwargs)

    return call


@dataclass(frozen=True)
class Chunking:
    """How `truncate="chunk"` windows a long input: overlap, and a bound per input."""

    overlap: int = 0
    max_windows: int = 64


@dataclass(frozen=True)
class TokenizedInput:
    """Ids ready to decode; `truncated` says whether tokens were cut to fit."""

    ids: TokenIds
    truncated: bool
    # With truncate="chunk" and an input over the context: the windows to decode (each
    # keeps the special tokens and prefix); `ids` is then the whole input.
    windows: tuple[TokenIds, ...] = ()
    from_text: bool = True


@dataclass(frozen=True)
class TokenPieces:
    """A text's ids, its distinct ids (sorted), where each id sits among them, and the
    bytes each distinct id stands for: a response without one object per token."""

    ids: TokenIds
    distinct: TokenIds
    positions: npt.NDArray[np.intp]
    pieces: list[bytes]

    def pieces_in_order(self) -> list[bytes]:
        return [self.pieces[position] for position in self.positions.tolist()]


@dataclass(frozen=True)
class TokenSpans:
    """One text's tokens as TEI's /tokenize lists them: id, whether the tokenizer added
    it (CLS, SEP, BOS, EOS), its piece, and its character span in `text` (the prefixed
    text that was tokenized; None for an added token)."""

    text: str
    ids: list[int]
    special: list[bool]
    pieces: list[str]
    spans: list[Span | None]


class Tokenizer:
    """Validating front of a native model's vocabulary, with a per-input token limit."""

    def __init__(
        self,
        native: NativeModel,
        limit: int,
        add_eos: bool | None = None,
        leases: Leases | None = None,
    ) -> None:
        """`add_eos` overrides the vocabulary's own add-EOS flag for texts (None: keep it).

        Last-token embedders (Qwen3-Embedding) are trained with an EOS at the end of every
        text and give wrong vectors without it; a GGUF converted without the flag needs
        `add_eos=True`. Token-id inputs are the caller's own ids and never get one.
        """
        self._native = native
        self.leases = leases or Leases("tokenizer")
        self.limit = limit
        self.vocab_size = native.n_vocab
        self._leading = int(native.adds_leading_special)
        trailing = native.adds_trailing_special
        self._append_eos = add_eos is True and not trailing
        self._drop_trailing = add_eos is False and trailing
        self._trailing = int(trailing if add_eos is None else add_eos)
        # Bounded: every request may send its own instruction, so an unbounded memo of
        # prefixes would grow with the traffic; a model's few fixed prefixes stay in it.
        self._prefix_lengths = functools.lru_cache(maxsize=PREFIX_MEMO_SIZE)(self._count_prefix)

    @_leased
    def prepare(
        self,
        items: Sequence[InputItem],
        truncation: Truncation,
        prefix: str = "",
        chunking: Chunking | None = None,
    ) -> list[TokenizedInput]:
        """`prefix` goes in front of every text (never of token ids), and truncation never
        cuts into it: the model must still see the prefix of a cut text."""
        kept = self._prefix_length(prefix)
        prepared = [
            self._prepare_one(item, index, truncation, prefix, kept)
            for index, item in enumerate(items)
        ]
        if truncation is not Truncation.CHUNK:
            return prepared
        chunking = chunking or Chunking()
        return [
            self._chunk(item, index, chunking, kept) if item.truncated else item
            for index, item in enumerate(prepared)
        ]

    @_leased
    def prepare_pairs(
        self,
        query: str,
        documents: Sequence[str],
        truncation: Truncation,
        max_document_tokens: int | None = None,
    ) -> list[TokenizedInput]:
        """One cross-encoder input per document: `[BOS] query [EOS][SEP] document [EOS]`.

        Both halves are tokenized without special-token parsing, so a document that
        contains "</s>" cannot end its segment early. A pair over the context loses
        tokens from the document's end (never the query's) when `truncation` allows,
        and `max_document_tokens` cuts every document first (Cohere's max_tokens_per_doc).
        """
        if not query:
            raise EmptyInputError("the query is an empty string", param="query")
        bos, middle, end = self._native.pair_specials()
        query_ids = self._encode_part(query, "the query", "query")
        head = np.asarray([*bos, *query_ids, *middle], np.int32)
        tail = np.asarray(end, np.int32)
        room = self.limit - len(head) - len(tail)
        if room < 1:
            raise InputTooLongError(
                index=None,
                n_tokens=len(head) + len(tail),
                limit=self.limit,
                message=f"the query takes {len(head) + len(tail)} tokens with the pair's "
                f"special tokens, leaving no room for a document in the model's limit "
                f"of {self.limit}",
                param="query",
            )
        pairs = []
        for index, document in enumerate(documents):
            where = f"documents[{index}]"
            if not document:
                raise EmptyInputError(f"document {index} is an empty string", param=where)
            body = self._encode_part(document, f"document {index}", where)
            cut = max_document_tokens is not None and len(body) > max_document_tokens
            if cut:
                body = body[:max_document_tokens]
            if len(body) > room:
                if truncation is Truncation.NONE:
                    raise InputTooLongError(
                        index=None,
                        n_tokens=len(head) + len(body) + len(tail),
                        limit=self.limit,
                        message=f"document {index} with the query takes "
                        f"{len(head) + len(body) + len(tail)} tokens, more than the model's "
                        f"limit of {self.limit}; shorten it or pass truncate=true (cuts "
                        "the document's end)",
                        param=where,
                    )
                body, cut = body[:room], True
            pairs.append(TokenizedInput(np.concatenate([head, body, tail]), truncated=cut))
        return pairs

    def _encode_part(self, text: str, name: str, param: str) -> TokenIds:
        """One half of a pair, without specials; an unencodable text names its field."""
        try:
            return self._native.tokenize(text.encode("utf-8"), add_special=False)
        except UnicodeEncodeError as exc:
            raise InvalidTextError(
                f"{name} is not valid Unicode text (character {exc.start}: {exc.reason})",
                param=param,
            ) from exc

    def _prefix_length(self, prefix: str) -> int:
        """Tokens of a prefix alone; a model has a handful, each tokenized once."""
        return self._prefix_lengths(prefix) if prefix else 0

    def _count_prefix(self, prefix: str) -> int:
        return len(self._encode_text(prefix, add_special=False))

    def _chunk(
        self, item: TokenizedInput, index: int, chunking: Chunking, kept: int
    ) -> TokenizedInput:
        """Windows of the body, each with the leading specials + prefix and the trailing
        specials, overlapping by `chunking.overlap` tokens."""
        ids = item.ids
        leading = self._leading + kept if item.from_text else 0
        trailing = self._trailing if item.from_text else 0
        head, body, tail = (
            ids[:leading],
            ids[leading : len(ids) - trailing],
            ids[len(ids) - trailing :],
        )
        room = self.limit - leading - trailing
        if chunking.overlap >= room:
            raise InputError(
                f"chunk_overlap={chunking.overlap} must be smaller than a window's {room} tokens",
                index=index,
            )
        step = room - chunking.overlap
        starts = list(range(0, max(len(body) - chunking.overlap, 1), step))
        if len(starts) > chunking.max_windows:
            raise InputError(
                f"input {index} needs {len(starts)} windows of {room} tokens; at most "
                f"{chunking.max_windows} are allowed per input",
                index=index,
            )
        windows = tuple(np.concatenate([head, body[s : s + room], tail]) for s in starts)
        return TokenizedInput(ids, truncated=True, windows=windows)

    @_leased
    def encode_text(
        self,
        text: str,
        index: int = 0,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenIds:
        """`max_tokens`: refuse a text with more tokens before any buffer for them exists,
        so the memory one call can take is bounded by the cap, not by the text."""
        return self._encode_text(
            text, index, add_special=add_special, parse_special=parse_special, max_tokens=max_tokens
        )

    def _encode_text(
        self,
        text: str,
        index: int = 0,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenIds:
        """`encode_text` for callers already holding the lease: one hold per call, not
        one per input, and a call that holds it never fails halfway once it started."""
        if not text:
            raise EmptyInputError(f"input {index} is an empty string", index=index)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidTextError(
                f"input {index} is not valid Unicode text (character {exc.start}: {exc.reason})",
                index=index,
            ) from exc
        if max_tokens is not None and len(data) > max_tokens:
            self._refuse_if_over(data, max_tokens, parse_special)
        ids = self._native.tokenize(
            data, add_special=add_special, parse_special=parse_special, max_tokens=max_tokens
        )
        if add_special and self._append_eos:
            ids = np.append(ids, np.int32(self._native.eos_token)).astype(np.int32)
        elif add_special and self._drop_trailing and len(ids) > 1:
            ids = ids[:-1]
        if len(ids) == 0:
            raise EmptyInputError(f"input {index} produced no tokens", index=index)
        return ids

    def _refuse_if_over(self, data: bytes, max_tokens: int, parse_special: bool) -> None:
        """Count a long text's tokens window by window and refuse it early when over the
        cap: llama.cpp's tokenizer holds ~80 bytes per token while it runs, so tokenizing
        16 MiB of "!" at once took over a GB before the count was known. A window edge
        can split a word (a few tokens more or less), hence the margin per window."""
        window = max(max_tokens, 1 << 16)
        total = start = 0
        while start < len(data):
            end = min(start + window, len(data))
            while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
                end -= 1
            counted = self._native.tokenize(
                data[start:end], add_special=False, parse_special=parse_special
            )
            total, start = total + len(counted), end
            if total > max_tokens + _WINDOW_MARGIN * (start // window + 1):
                raise TokenLimitError(n_tokens=total, limit=max_tokens, at_least=True)

    def check_ids(
        self, tokens: Sequence[int] | npt.NDArray[np.integer], index: int = 0
    ) -> TokenIds:
        if len(tokens) == 0:
            raise EmptyInputError(f"input {index} is an empty list of token ids", index=index)
        ids = np.asarray(tokens, dtype=np.int64)
        bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))
        if bad.size:
            position = int(bad[0])
            raise InvalidTokenError(
                f"input {index} has token id {int(ids[position])} at position {position}, "
                f"outside the vocabulary (0..{self.vocab_size - 1})",
                index=index,
            )
        return ids.astype(np.int32)

    @_leased
    def detokenize(self, tokens: Sequence[int] | npt.NDArray[np.integer]) -> str:
        return self._native.detokenize(self.check_ids(tokens))

    @_leased
    def pieces(self, tokens: Sequence[int] | npt.NDArray[np.integer]) -> list[bytes]:
        return [self._native.piece(int(token)) for token in self.check_ids(tokens)]

    @_leased
    def encode_with_pieces(
        self,
        text: str,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenPieces:
        """Ids and the pieces of the distinct ones under one lease: both from the same
        vocabulary, even if a reload swaps the model between two separate calls."""
        ids = (
            self._encode_text(
                text, add_special=add_special, parse_special=parse_special, max_tokens=max_tokens
            )
            if text
            else np.zeros(0, np.int32)
        )
        distinct, positions = np.unique(ids, return_inverse=True)
        pieces = [self._native.piece(int(token)) for token in distinct]
        return TokenPieces(ids, distinct.astype(np.int32), positions, pieces)

    @_leased
    def encode_spans(
        self,
        texts: Sequence[str],
        *,
        add_special: bool = True,
        prefix: str = "",
        max_tokens: int | None = None,
    ) -> list[TokenSpans]:
        """Each text behind `prefix`, tokenized as `prepare` tokenizes it (no special-token
        parsing), with each token's span; `max_tokens` bounds all texts' tokens together."""
        found, total = [], 0
        for index, text in enumerate(texts):
            if not text:  # a prefix must not turn an empty input into a valid one
                raise EmptyInputError(f"input {index} is an empty string", index=index)
            whole = prefix + text
            ids = self._encode_text(whole, index, add_special=add_special, max_tokens=max_tokens)
            total += len(ids)
            if max_tokens is not None and total > max_tokens:
                raise TokenLimitError(n_tokens=total, limit=max_tokens, at_least=True)
            found.append(self._spans(whole, ids, add_special))
        return found

    def _spans(self, text: str, ids: TokenIds, add_special: bool) -> TokenSpans:
        pieces = [self._native.piece(token) for token in ids.tolist()]
        lead = self._leading if add_special else 0
        trail = len(ids) - (self._trailing if add_special else 0)
        special = [not lead <= position < trail for position in range(len(ids))]
        spans = align_pieces(text, pieces, special)
        return TokenSpans(
            text,
            ids.tolist(),
            special,
            [piece.decode("utf-8", "replace") for piece in pieces],
            spans,
        )

    @_leased
    def decode(
        self, tokens: Sequence[int] | npt.NDArray[np.integer], *, keep_special: bool, index: int = 0
    ) -> str:
        """The text of `tokens` (checked against the vocabulary); WordPiece's leading space
        on the first word dropped, as Hugging Face's decoder drops it."""
        if len(tokens) == 0:
            return ""
        ids = self.check_ids(tokens, index)
        text = self._native.detokenize(ids, keep_special=keep_special)
        return text[1:] if self._native.is_wordpiece and text.startswith(" ") else text

    def _prepare_one(
        self, item: InputItem, index: int, truncation: Truncation, prefix: str, kept: int
    ) -> TokenizedInput:
        if isinstance(item, str):
            if not item:  # a prefix must not turn an empty input into a valid one
                raise EmptyInputError(f"input {index} is an empty string", index=index)
            ids = self._encode_text(prefix + item, index)
            leading, trailing = self._leading + kept, self._trailing
        else:
            ids, leading, trailing = self.check_ids(item, index), 0, 0
        if len(ids) <= self.limit:
            return TokenizedInput(ids, truncated=False)
        if truncation is Truncation.NONE or leading + trailing >= self.limit:
            raise InputTooLongError(index=index, n_tokens=len(ids), limit=self.limit)
        if truncation is Truncation.CHUNK:  # windows are cut by `_chunk`
            return TokenizedInput(ids, truncated=True, from_text=isinstance(item, str))
        return TokenizedInput(self._cut(ids, truncation, leading, trailing), truncated=True)

    def _cut(self, ids: TokenIds, truncation: Truncation, leading: int, trailing: int) -> TokenIds:
        """Cut the body, keeping the special tokens the tokenizer added at each end."""
        keep = self.limit - leading - trailing
        body = ids[leading : len(ids) - trailing]
        body = body[:keep] if truncation is Truncation.END else body[len(body) - keep :]
        return np.concatenate([ids[:leading], body, ids[len(ids) - trailing :]])
