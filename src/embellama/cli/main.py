"""`embellama` command line: parse arguments, dispatch to one subcommand module.

Errors that embellama raises on purpose print as one line and exit 2; anything else
is a bug and keeps its traceback. The global options are taken before or after the
subcommand's name, by every subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from embellama.cli import embed, inspect, models, serve
from embellama.errors import EmbellamaError

__all__ = ["build_parser", "main", "parse_args"]

_LOG_LEVELS = ["debug", "info", "warning", "error"]
_LOG_HELP = "Log level; llama.cpp's own messages show at 'debug'."


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless its text already says it (the
    option table's help does, and so does a text that explains a computed default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        if not action.option_strings or "default" in help.lower():
            return help
        if action.default is argparse.SUPPRESS:
            return help
        value = action.default
        shown = "off" if value is False else "none" if value in (None, []) else str(value)
        return f"{help} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

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
        default=None,
        choices=_LOG_LEVELS,
        help=f"{_LOG_HELP} (default: warning)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    embed.register(commands)
    inspect.register(commands)
    models.register(commands)
    serve.register(commands)
    for command in commands.choices.values():
        _add_global_options(command)
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """`embellama embed --log-level debug`, as well as before the name. SUPPRESS keeps a
    subcommand that was not given the flag from resetting what came before its name;
    `serve` has its own `--log-level` (its server option), which the global one feeds."""
    if "--log-level" not in parser._option_string_actions:
        parser.add_argument(
            "--log-level",
            dest="global_log_level",
            default=argparse.SUPPRESS,
            choices=_LOG_LEVELS,
            help=f"{_LOG_HELP} (default: warning)",
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_global_options(nested)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.global_log_level is not None and getattr(args, "log_level", "") is None:
        args.log_level = args.global_log_level  # `embellama --log-level debug serve`
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=(args.global_log_level or "warning").upper(),
        format="%(levelname)s %(name)s: %(message)s",
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
