"""Cut a Markdown file into the snippets a reader would run: one per shell command of a
`sh` block (backslash continuations and multi-line quotes joined), one per `python` or
`toml` block, every `curl` line of other fences, and every `embellama ...` command quoted
inline in the prose (unless a fenced snippet already is that command). Parsing only."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL = frozenset({"sh", "bash", "shell", "console"})
WHOLE = frozenset({"python", "toml"})
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
INLINE = re.compile(r"`(embellama [^`]+)`")


@dataclass(frozen=True)
class Snippet:
    """`kind` is "sh" (one command), "inline" (a command quoted in the prose), "python" or
    "toml" (a whole block)."""

    kind: str
    text: str
    line: int  # 1-based line of the snippet's first line in the file
    block: int  # index of the fenced block it came from

    def words(self) -> list[str]:
        """The command's words as the shell splits them, comments dropped (commands only)."""
        return _split(self.text)

    def label(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"line {self.line} [{self.kind}] {first[:70]}"


@dataclass(frozen=True)
class _Block:
    lang: str
    lines: list[str]
    line: int  # line of the block's first content line
    index: int


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text().splitlines()
    blocks = _blocks(lines)
    fenced = _fenced(lines, blocks)
    out = [*_fenced_snippets(blocks), *_inline(lines, fenced, len(blocks))]
    unique: list[Snippet] = []
    for snippet in out:
        if snippet.kind != "inline" or all(_words(snippet) != _words(s) for s in unique):
            unique.append(snippet)
    return unique


def _words(snippet: Snippet) -> list[str]:
    return snippet.words() if snippet.kind in ("sh", "inline") else [snippet.text]


def _fenced_snippets(blocks: list[_Block]) -> list[Snippet]:
    out: list[Snippet] = []
    for block in blocks:
        if block.lang in SHELL:
            out.extend(_commands(block))
        elif block.lang in WHOLE:
            out.append(Snippet(block.lang, "\n".join(block.lines) + "\n", block.line, block.index))
        else:
            out.extend(
                Snippet("sh", text, block.line + offset, block.index)
                for offset, text in enumerate(block.lines)
                if text.lstrip().startswith("curl ")
            )
    return out


def _fenced(lines: list[str], blocks: list[_Block]) -> set[int]:
    """Line numbers inside fences, the fence lines included."""
    return {n for b in blocks for n in range(b.line - 1, b.line + len(b.lines) + 1)}


def _inline(lines: list[str], fenced: set[int], first_block: int) -> list[Snippet]:
    """One pseudo-block each, so an inline `embellama serve` gets a server of its own."""
    found = [
        (number, match[1])
        for number, text in enumerate(lines, start=1)
        if number not in fenced
        for match in INLINE.finditer(text)
    ]
    return [
        Snippet("inline", text, number, first_block + k) for k, (number, text) in enumerate(found)
    ]


def _blocks(lines: list[str]) -> list[_Block]:
    """Fenced blocks, indented ones (inside list items) included, their indent removed."""
    blocks: list[_Block] = []
    opened: tuple[str, str, int] | None = None
    body: list[str] = []
    for number, text in enumerate(lines, start=1):
        fence = FENCE.match(text)
        if opened is None and fence:
            opened, body = (fence["indent"], fence["lang"].lower(), number + 1), []
        elif opened is not None and fence and not fence["lang"]:
            indent, lang, first = opened
            stripped = [line[len(indent) :] if line.startswith(indent) else line for line in body]
            blocks.append(_Block(lang, stripped, first, len(blocks)))
            opened = None
        elif opened is not None:
            body.append(text)
    if opened is not None:
        raise ValueError(f"{opened[2] - 1}: a fence that is never closed")
    return blocks


def _commands(block: _Block) -> list[Snippet]:
    """Lines joined until the command is complete: no trailing backslash, quotes closed."""
    commands: list[Snippet] = []
    pending: list[str] = []
    start = block.line
    for offset, text in enumerate(block.lines):
        if not pending:
            start = block.line + offset
        pending.append(text)
        joined = "\n".join(pending)
        if text.rstrip().endswith("\\") or not _complete(joined):
            continue
        if _split(joined):
            commands.append(Snippet("sh", joined, start, block.index))
        pending = []
    if pending:
        raise ValueError(f"line {start}: an unfinished shell command")
    return commands


def _complete(text: str) -> bool:
    try:
        _split(text)
    except ValueError:  # "No closing quotation"
        return False
    return True


def _split(text: str) -> list[str]:
    """As bash reads it: a backslash-newline is no character at all."""
    return shlex.split(text.replace("\\\n", ""), comments=True)
