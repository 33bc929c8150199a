"""Where each token of a text sits in it: character offsets recovered from the pieces.

llama.cpp gives a token's id and piece (the bytes it stands for, as the model's
vocabulary spells them), never its offsets. The pieces are matched back to the text as
the model's normalizer saw it: case folded, accents stripped (BERT's normalization),
whitespace a piece does not carry skipped (WordPiece, SentencePiece and byte-level
vocabularies all render a word's leading space as a plain space), and the pieces of one
character split over several byte tokens grouped. A token that cannot be matched (an
unknown-word token, a normalization this module does not know) gets the unmatched span
between its neighbours, so offsets never go backwards and never fail. Pure Python: no
llama.cpp handle here.
"""

from __future__ import annotations

import io
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_ALIGNED_CHARACTERS", "Span", "align_pieces"]

# The most characters one request's texts may hold for alignment: the folded text and
# its source offsets are kept whole (NFKD can expand a character 18-fold, e.g. U+FDFA),
# and this bounds them near 150 MB however the text is made.
MAX_ALIGNED_CHARACTERS = 1 << 20

Span = tuple[int, int]

# How far past the cursor a piece is looked for after an unmatched token: an unknown
# word is short, and a bounded search keeps a long text's alignment linear.
_RESYNC_WINDOW = 256
# Marks a vocabulary may leave in a rendered piece: WordPiece's continuation prefix,
# SentencePiece's and byte-level BPE's word-start spaces.
_CONTINUATION = "##"
_SPACE_MARKS = str.maketrans({"\u2581": " ", "\u0120": " ", "\u010a": "\n"})


def _fold(text: str) -> str:
    """What a normalizing tokenizer compares: case folded, compatibility-decomposed,
    combining marks dropped ("Héllo" -> "hello", "ﬁ" -> "fi")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _skippable(ch: str) -> bool:
    """Characters no piece stands for: whitespace, control and format characters."""
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")


@dataclass
class _Folded:
    """The text folded character by character: `chars[k]` came from `source[k]`."""

    text: str
    chars: str
    source: array[int]  # 4 bytes per folded character, not a Python int each
    # The last skip_blanks answer: unmatched tokens ask again from the same cursor, and
    # rescanning a long run of blanks for each would make the alignment quadratic.
    _skipped: tuple[int, int] = field(default=(-1, -1), repr=False)

    @classmethod
    def of(cls, text: str) -> _Folded:
        chars = io.StringIO()
        source = array("i")
        for index, ch in enumerate(text):
            part = " " if _skippable(ch) else _fold(ch)
            chars.write(part)
            source.extend([index] * len(part))
        return cls(text, chars.getvalue(), source)

    def start_of(self, k: int) -> int:
        return self.source[k] if k < len(self.source) else len(self.text)

    def stop_of(self, k: int) -> int:
        """The original offset after folded position `k - 1`: a token ending inside a
        character's expansion ("ß" -> "ss") covers the whole character, and the
        combining marks after it (which fold to nothing) too."""
        if k <= 0:
            return 0
        return max(self.source[k - 1] + 1, self.start_of(k))

    def skip_blanks(self, k: int) -> int:
        asked, answer = self._skipped
        if asked == k:
            return answer
        end = k
        while end < len(self.chars) and self.chars[end] == " ":
            end += 1
        self._skipped = (k, end)
        return end


def _candidates(piece: str) -> list[str]:
    """The piece as the text may hold it, most literal first."""
    found = [piece.translate(_SPACE_MARKS)]
    if piece.startswith(_CONTINUATION) and len(piece) > len(_CONTINUATION):
        found.append(piece[len(_CONTINUATION) :])
    folded = []
    for candidate in found:
        text = "".join(" " if _skippable(ch) else ch for ch in candidate).strip(" ")
        folded.append(" ".join(_fold(word) for word in text.split(" ")))
    return [text for text in dict.fromkeys(folded) if text]


def _groups(pieces: Sequence[bytes], special: Sequence[bool]) -> list[tuple[int, int, str | None]]:
    """Consecutive tokens whose bytes only together make whole UTF-8 (a character
    split over byte tokens), as (first, end, text); text None when they never do."""
    groups: list[tuple[int, int, str | None]] = []
    index = 0
    while index < len(pieces):
        if special[index]:
            groups.append((index, index + 1, None))
            index += 1
            continue
        end, data = index + 1, pieces[index]
        text = _decoded(data)
        while text is None and end < len(pieces) and not special[end] and end - index < 4:
            data += pieces[end]
            end += 1
            text = _decoded(data)
        if text is None:
            end = index + 1  # not a split character: this token alone, unmatched
        groups.append((index, end, text))
        index = end
    return groups


def _decoded(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Aligner:
    def __init__(self, text: str) -> None:
        self.folded = _Folded.of(text)
        self.cursor = 0  # folded position after the last matched token

    def match(self, piece: str, resync: bool) -> tuple[int, int] | None:
        """The piece's folded [start, stop) at the cursor (whitespace skipped), or, after
        an unmatched token, the nearest one ahead within the window."""
        chars = self.folded.chars
        at = self.folded.skip_blanks(self.cursor)
        for candidate in _candidates(piece):
            if chars.startswith(candidate, at):
                return at, at + len(candidate)
        if not resync:
            return None
        best: tuple[int, int] | None = None
        for candidate in _candidates(piece):
            found = chars.find(candidate, at, at + _RESYNC_WINDOW + len(candidate))
            if found >= 0 and (best is None or found < best[0]):
                best = (found, found + len(candidate))
        return best

    def span(self, start: int, stop: int) -> Span:
        first = self.folded.start_of(start)
        return first, max(first, self.folded.stop_of(stop))

    def blank_span(self, piece: str) -> Span:
        """A piece of only whitespace (SentencePiece's lone "▁"): the blanks it stands
        for at the cursor, or nothing there."""
        chars, at = self.folded.chars, self.cursor
        width = len(piece.translate(_SPACE_MARKS))
        stop = at
        while stop < len(chars) and stop - at < width and chars[stop] == " ":
            stop += 1
        self.cursor = stop
        start = self.folded.start_of(at)
        return (start, self.folded.stop_of(stop)) if stop > at else (start, start)


def align_pieces(text: str, pieces: Sequence[bytes], special: Sequence[bool]) -> list[Span | None]:
    """Each token's [start, stop) in `text` (characters), None for a special token.

    Starts never decrease and every span lies within the text; an unmatched token gets
    the span between the tokens matched around it.
    """
    aligner = _Aligner(text)
    spans: list[Span | None] = [None] * len(pieces)
    pending: list[int] = []  # unmatched tokens waiting for the next match
    for first, end, piece in _groups(pieces, special):
        if special[first]:
            continue
        if piece is not None and piece.translate(_SPACE_MARKS).isspace():
            # Unmatched tokens before it end where its blanks begin: starts stay in order.
            _settle(aligner, spans, pending, aligner.folded.start_of(aligner.cursor))
            spans[first:end] = [aligner.blank_span(piece)] * (end - first)
            continue
        found = aligner.match(piece, bool(pending)) if piece is not None else None
        if found is None:
            pending.extend(range(first, end))
            continue
        start, stop = found
        _settle(aligner, spans, pending, aligner.folded.start_of(start))
        spans[first:end] = [aligner.span(start, stop)] * (end - first)
        aligner.cursor = stop
    _settle(aligner, spans, pending, len(text))
    return spans


def _settle(aligner: _Aligner, spans: list[Span | None], pending: list[int], until: int) -> None:
    """Unmatched tokens cover what lies between the last match and `until`, blanks at
    either end left out."""
    if not pending:
        return
    folded = aligner.folded
    start = min(folded.start_of(folded.skip_blanks(aligner.cursor)), until)
    end = until
    while end > start and _skippable(folded.text[end - 1]):
        end -= 1
    for index in pending:
        spans[index] = (start, end)
    pending.clear()
