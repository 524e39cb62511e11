"""`imgcls serve` and `imgcls export`: argument parsing and printing; the work is in
imgcls.serve (server.run_service: the API key file, the refusal to serve a reachable host
without a key, uvicorn), imgcls.export (which export the flags ask for), imgcls.evaluation
(the checked exports) and imgcls.webapp.

`python -m imgcls.cli.serve serve|export ...` runs these verbs without the rest of the CLI.

Every `serve` flag can also come from an environment variable: IMGCLS_ and the flag's name
in capitals (--max-batch -> IMGCLS_MAX_BATCH, MODEL -> IMGCLS_MODEL); a flag on the
command line wins. Containers and Kubernetes set these instead of building a command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from imgcls.cli.backend_option import add_backend_option, add_quantize_options
from imgcls.cli.parsing import Parser, add_verbs, run
from imgcls.errors import UserError
from imgcls.serve.settings import ServeSettings  # a plain dataclass: no [serve] extra needed
from imgcls.utils.extras import require

_DEFAULTS = ServeSettings()
_YES, _NO = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
EXIT_REFUSED = 2  # export: the int8 model failed its check (2, not 1: nothing was written)


def add_commands(verbs: argparse._SubParsersAction) -> None:
    _add_serve(verbs)
    _add_export(verbs)


def env_name(flag: str) -> str:
    return "IMGCLS_" + flag.lstrip("-").replace("-", "_").upper()


def _env_option(command: argparse.ArgumentParser, flag: str, default: Any, help: str,
                **kwargs: Any) -> None:
    """A flag whose default comes from IMGCLS_<FLAG> when that is set (argparse applies
    `type` to a string default, so the variable is checked like the flag)."""
    variable = env_name(flag)
    command.add_argument(flag, default=os.environ.get(variable, default),
                         help=f"{help} (env {variable}; default: {default})", **kwargs)


def _add_serve(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("serve", help="a REST service (and web page) for a model file")
    command.set_defaults(handler=_serve)
    command.add_argument("model", metavar="MODEL", nargs="?",
                         default=os.environ.get("IMGCLS_MODEL"),
                         help="a model.safetensors, a run directory or an exported .onnx "
                              "(env IMGCLS_MODEL)")
    defaults = _DEFAULTS
    _env_option(command, "--host", defaults.host, "address to bind; 0.0.0.0 for all")
    _env_option(command, "--port", defaults.port, "TCP port", type=int)
    _env_option(command, "--api-key", None, "require `Authorization: Bearer KEY` on every "
                "route but health")
    _env_option(command, "--api-key-file", None, "read the API key from this file (a Docker "
                "or Kubernetes secret)")
    command.add_argument("--insecure", action="store_const", const="1",
                         default=os.environ.get("IMGCLS_INSECURE", ""),
                         help="serve on a non-loopback --host without an API key (env "
                              "IMGCLS_INSECURE=1; refused otherwise)")
    _env_option(command, "--cors-origin", "", "allow browser calls from these origins "
                "(comma-separated; none by default)")
    _env_option(command, "--max-batch", defaults.max_batch, "images per forward pass",
                type=int)
    _env_option(command, "--max-wait-ms", defaults.max_wait_ms,
                "how long a batch waits to fill", type=float)
    _env_option(command, "--max-queue", defaults.max_queue,
                "images waiting at most; more get 503", type=int)
    _env_option(command, "--max-upload-mb", defaults.max_upload_mb,
                "request body limit in MiB", type=float)
    _env_option(command, "--max-pixels", defaults.max_pixels, "pixels per image, checked "
                "before decoding; more get 413 (40M, 1.5e8 or an integer)", type=pixel_count)
    _env_option(command, "--timeout-s", defaults.timeout_s, "per-request limit; 504 beyond",
                type=float)
    _env_option(command, "--read-timeout-s", defaults.read_timeout_s,
                "the request body must arrive within this; 408 beyond", type=float)
    _env_option(command, "--topk", defaults.topk, "default number of classes answered",
                type=int)
    _env_option(command, "--reject-below", defaults.reject_below, "answer `unknown` when an "
                "image's familiarity is below this: a number, card (the model file's "
                "threshold) or off; a request's reject_below overrides it", type=reject_below)
    _env_option(command, "--model-name", None, "name in URLs (default: from the file name)")
    _env_option(command, "--device", None, "cpu, cuda, cuda:1 (default: CUDA when present)")
    _env_option(command, "--threads", None, "inference threads (default: all cores)",
                type=int)
    _env_option(command, "--log-level", defaults.log_level, "uvicorn's log level",
                choices=("critical", "error", "warning", "info", "debug"))
    command.add_argument("--explain", action="store_const", const="1",
                         default=os.environ.get("IMGCLS_EXPLAIN", ""),
                         help="also answer POST /v1/explain with Grad-CAM heat maps (needs "
                              "the model.safetensors and torch; env IMGCLS_EXPLAIN=1)")
    add_backend_option(command, env=True)


def pixel_count(text: str | int) -> int:
    """`40M`, `100m`, `1.5e8` or `40000000` -> pixels (argparse reports a ValueError)."""
    text = str(text).strip().upper()
    scale = 1_000_000 if text.endswith("M") else 1
    try:
        return int(float(text.removesuffix("M")) * scale)
    except OverflowError:  # `inf`: argparse reports only ValueError as a bad value
        raise ValueError(text) from None


def reject_below(text: str | float) -> float | str:
    """`card`, `off` or a familiarity (argparse reports the ValueError)."""
    from imgcls.predict.prediction import parse_reject_below

    return parse_reject_below(text)


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The flags (and IMGCLS_* variables) as ServeSettings; an --api-key-file is read by
    imgcls.serve.server.run_service."""
    origins = tuple(origin.strip() for origin in args.cors_origin.split(",") if origin.strip())
    return ServeSettings(
        host=args.host, port=args.port, api_key=args.api_key or None, cors_origins=origins,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
        timeout_s=args.timeout_s, read_timeout_s=args.read_timeout_s, topk=args.topk,
        model_name=args.model_name, device=args.device, threads=args.threads,
        log_level=args.log_level, backend=args.backend, reject_below=args.reject_below,
        explain=_yes(args.explain, "--explain / IMGCLS_EXPLAIN"),
    )


def _serve(args: argparse.Namespace) -> int:
    from imgcls.serve.server import run_service  # torch- and FastAPI-free until it runs

    return run_service(args.model, serve_settings(args), api_key_file=args.api_key_file,
                       insecure=_yes(args.insecure, "--insecure / IMGCLS_INSECURE"),
                       say=lambda line: print(line, file=sys.stderr))


def _yes(value: str, name: str) -> bool:
    if value.strip().lower() not in _YES | _NO:
        raise UserError(f"{name} is {value!r}; use 1/true/yes or 0/false/no")
    return value.strip().lower() in _YES


def _add_export(verbs: argparse._SubParsersAction) -> None:
    from imgcls.export.formats import FORMATS  # not imgcls.export.writers: that imports torch

    command = verbs.add_parser("export", help="write a model file as ONNX or TorchScript")
    command.set_defaults(handler=_export)
    command.add_argument("model", metavar="MODEL", help="a model.safetensors or a run directory")
    command.add_argument("--format", choices=(*FORMATS, "web"), default="onnx",
                         help="web: a folder with an offline phone app (imgcls.webapp)")
    command.add_argument("--output", "-o", help="default: beside the model (model.onnx, "
                         "model.torchscript.pt)")
    command.add_argument("--check-samples", type=int, default=256,
                         help="images for the parity check; 0 skips it (default: 256)")
    command.add_argument("--check-data", help="folder, CSV or built-in name for the parity "
                         "check (default: the model's built-in data set, else random images)")
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    add_quantize_options(command)
    command.add_argument("--latency-runs", type=int, default=10, metavar="N",
                         help="--format web: time the app's model on one image N times in "
                              "headless Chromium (Playwright), else onnxruntime on this CPU; "
                              "0 skips it (default: 10)")


def _export(args: argparse.Namespace) -> int:
    from imgcls.export.formats import plan_export  # torch-free: a missing package is first

    plan = plan_export(args.format, args.quantize, args.check_samples)
    require(f"imgcls export {plan.flag}", "serve", *plan.packages)
    handlers = {"web": _export_web, "int8": _export_int8, "file": _export_file}
    return handlers[plan.kind](args)


def _export_file(args: argparse.Namespace) -> int:
    from imgcls.evaluation.export_parity import check_export
    from imgcls.export.writers import export_model

    written = export_model(args.model, args.format, args.output)
    # Said before the check runs: a check that cannot start (its data missing) still leaves
    # the user knowing where the file is.
    print(f"exported {args.format} to {written}")
    parity = check_export(args.model, written, samples=args.check_samples,
                          data=args.check_data, data_dir=args.data_dir)
    if parity is None:
        return 0
    print(parity.describe())
    if parity.holds:
        return 0
    print("imgcls: warning: the export differs from the model more than expected",
          file=sys.stderr)
    return 1


def _export_int8(args: argparse.Namespace) -> int:
    from imgcls.evaluation.int8_export import export_int8, refusal

    check, written = export_int8(args.model, data=args.check_data, data_dir=args.data_dir,
                                 max_accuracy_drop=args.max_accuracy_drop,
                                 min_agreement=args.min_agreement, output=args.output)
    print(check.describe())
    print(f"quantization: {check.scheme}")
    if written is None:
        print(f"imgcls: refusing the int8 model: {refusal(check)}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"exported int8 onnx to {written} (--backend onnx-int8 runs it)")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    from imgcls.webapp.command import export_web
    from imgcls.webapp.shipped import Int8Request

    int8 = Int8Request(data=args.check_data, data_dir=args.data_dir,
                       max_accuracy_drop=args.max_accuracy_drop,
                       min_agreement=args.min_agreement)
    result = export_web(args.model, args.output, quantize=args.quantize, int8=int8,
                        check_samples=args.check_samples, latency_runs=args.latency_runs)
    if result.refused:
        print(f"imgcls: refusing the int8 model: {result.shipped.reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(result.shipped.describe())
    print(f"exported the web app to {result.folder} ({result.size})")
    if result.latency is not None:
        print(result.latency.describe())
    print(f"serve the folder over HTTPS (or on localhost) for offline use, e.g. "
          f"`python -m http.server -d {result.folder}` and open http://localhost:8000/")
    if result.parity is None:
        return 0
    print(result.parity.describe())
    if result.parity_holds:
        return 0
    print("imgcls: warning: the web app's model differs from the model more than expected",
          file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m imgcls.cli.serve serve|export ...`, the same verbs without the full CLI."""
    parser = Parser(prog="imgcls")
    add_commands(add_verbs(parser))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
