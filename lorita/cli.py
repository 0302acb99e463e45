"""The `lorita` command: compress a model locally, fetch data, run the service.

    lorita compress --arch fcn --dataset mnist --factor 3 --epochs 8
    lorita compress ... --json          # exactly one JSON object (the Result) on stdout
    lorita data fetch mnist
    lorita serve | lorita worker | lorita token create|list|revoke | lorita migrate

Progress goes to stderr; results to stdout. Errors a user can fix exit with code 2
and a one-line message, Ctrl-C with 130.

This module builds the parser and turns errors into exit codes; each sub-command's
flags and handler live in its own module (compress_command, data_command,
service_commands), which imports torch or the service only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from core.threads import prefer_passive_openmp_wait
from lorita import __version__
from lorita.cli_terms import CliTerms
from lorita.compress_command import add_compress
from lorita.data_command import add_data
from lorita.service_commands import add_service

prefer_passive_openmp_wait()  # before torch loads: see core/threads.py

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorita", description="Compress neural networks with LoRITa."
    )
    parser.add_argument("--version", action="version", version=f"lorita {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_compress(subparsers)
    add_data(subparsers)
    add_service(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from core.errors import LoritaError

    # Messages name spec fields (train.lr); on the command line they are flags (--lr).
    args.terms = terms = CliTerms(_subparser(parser, "compress"))
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValidationError as error:
        print(f"lorita: {terms.validation_problems(error.errors())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except LoritaError as error:
        print(f"lorita: {terms.text(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps sub-commands in a private action
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


if __name__ == "__main__":
    sys.exit(main())
