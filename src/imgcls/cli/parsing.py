"""The parser class and the dispatch every entry point shares (`imgcls`, and the standalone
`python -m imgcls.cli.serve` and `python -m imgcls.cli.tools`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imgcls.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (like every other user error), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def add_verbs(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The verbs of `parser`; each verb's parser is a Parser too (one-line usage errors)."""
    return parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                 parser_class=Parser)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch: a user's mistake is one line on stderr and exit code 2."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage mistake already printed
        return int(exit_request.code or 0)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"imgcls: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130
