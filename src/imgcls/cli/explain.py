"""`imgcls explain RUN IMAGE... -o DIR [--top K]`: argument parsing; the work is in the
public API (imgcls.explain)."""

from __future__ import annotations

import argparse
import sys


def add_commands(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "explain", help="Grad-CAM: where in each image the model found its top classes")
    command.set_defaults(handler=_explain)
    command.add_argument("model", metavar="RUN", help="a run directory or model.safetensors")
    command.add_argument("images", metavar="IMAGE|DIR", nargs="+")
    command.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="folder for the overlay PNGs and explanations.json")
    command.add_argument("--top", type=int, default=1,
                         help="classes explained per image, most probable first (default: 1)")
    command.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")


def _explain(args: argparse.Namespace) -> int:
    import imgcls

    result = imgcls.explain(args.model, args.images, args.output, top=args.top,
                            device=args.device)
    for overlay in result.overlays:
        print(f"{overlay.image}\t{overlay.rank}\t{overlay.label}\t{overlay.probability:.4f}"
              f"\t{overlay.file}")
    for skipped in result.skipped:
        print(f"imgcls: skipped {skipped.image}: {skipped.reason}", file=sys.stderr)
    print(f"{len(result.overlays)} overlays ({result.layer}) and the index: {result.index}",
          file=sys.stderr)
    return 1 if result.skipped else 0
