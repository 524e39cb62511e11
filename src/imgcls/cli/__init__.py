"""Command line: argument parsing only; every verb calls the public API.

Imports go one way, down this list:

  __init__.py  main(): the whole parser, dispatch (parsing.run)
  train.py     train, eval, predict, models       data.py   data check|restore|stats|split|preview
  tools.py     lr-find, compare, tune             serve.py  serve, export
  explain.py   explain (Grad-CAM overlays)
  options.py   TrainConfig flags and config_from_args, shared by train, tools and data
  parsing.py   Parser (one-line usage errors) and run (one-line user errors, exit 2)

A verb module imports options and parsing, never another verb module or this one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from imgcls.cli.parsing import Parser, add_verbs, run

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


def build_parser() -> argparse.ArgumentParser:
    # The verb modules are imported here, not at the top: `python -m imgcls.cli.serve`
    # imports this package first, and serve.py imported already would then run twice.
    from imgcls.cli import data, explain, labels, serve, tools, train

    parser = Parser(prog="imgcls", description="Deep-learning image classification.")
    verbs = add_verbs(parser)
    train.add_commands(verbs)
    labels.add_commands(data.add_commands(verbs))
    tools.add_commands(verbs)
    serve.add_commands(verbs)
    explain.add_commands(verbs)
    return parser
