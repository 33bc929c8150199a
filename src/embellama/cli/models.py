"""`embellama models ...`: prepare and locate the built-in default model."""

from __future__ import annotations

import argparse
from typing import Any

from embellama.default_model import DEFAULT_MODEL_NAME, default_model_path, prepare_default_model


def register(commands: Any) -> None:
    parser = commands.add_parser("models", help="Manage the built-in default model.")
    actions = parser.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser(
        "prepare-default",
        help=f"Convert the packaged {DEFAULT_MODEL_NAME} to GGUF once (needs the 'prep' extra).",
    )
    prepare.add_argument(
        "--force", action="store_true", help="Convert again even if a verified copy exists."
    )
    prepare.set_defaults(handler=run_prepare)
    path = actions.add_parser("path", help="Print where the default model lives.")
    path.set_defaults(handler=run_path)


def run_prepare(args: argparse.Namespace) -> int:
    prepared = prepare_default_model(force=args.force)
    verb = "prepared" if prepared.created else "already prepared"
    print(f"{DEFAULT_MODEL_NAME} {verb}: {prepared.path} (sha256 {prepared.sha256})")
    return 0


def run_path(args: argparse.Namespace) -> int:
    print(default_model_path())
    return 0
