"""`embellama` command line: parse arguments, dispatch to one subcommand module.

Errors that embellama raises on purpose print as one line and exit 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from embellama.cli import embed, inspect, models, serve
from embellama.errors import EmbellamaError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="embellama",
        description="Exact, fast text embeddings from GGUF models through llama.cpp.",
    )
    parser.add_argument(
        "--log-level",
        dest="global_log_level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="Log level; llama.cpp's own messages show at 'debug' (default: warning).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    embed.register(commands)
    inspect.register(commands)
    models.register(commands)
    serve.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.global_log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except EmbellamaError as exc:
        print(f"embellama: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
