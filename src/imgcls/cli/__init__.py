"""Command line: each verb parses its flags into plain values, calls the public API
(imgcls/__init__.py) or the package that owns the work (imgcls.data, imgcls.models,
imgcls.serve, imgcls.evaluation, imgcls.tools ...), prints what that returns and picks the exit
code from it. Opening files and models, checks and policies belong to those packages.

  __init__.py       main(): the whole parser, dispatch (parsing.run); __main__.py runs it
  train.py          train, eval, calibrate, predict, models
  data.py           data check | restore | stats | split | preview
  labels.py         data labels | suggest (added beside data.py's sub-verbs)
  tools.py          lr-find, compare, tune        serve.py   serve, export
  explain.py        explain (Grad-CAM overlays)
  options.py        TrainConfig flags and config_from_args, shared by train, tools and data
  backend_option.py --backend (predict, eval, serve) and export's --quantize flags
  parsing.py        Parser (one-line usage errors) and run (one-line user errors, exit 2)

A verb module imports only options, backend_option and parsing of this package, never
another verb module nor this one; nothing it imports at the top imports torch, so `imgcls
--help` starts fast.
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
