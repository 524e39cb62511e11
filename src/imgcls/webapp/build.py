"""Assemble the phone app's files: the model as ONNX (preprocessing and softmax inside, from
export.py), its class names and input shape, the page, the vendored runtime, a manifest,
icons and a service worker that caches all of it for offline use."""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from imgcls.errors import UserError
from imgcls.webapp.icons import ICON_SIZES, icon_png
from imgcls.webapp.runtime import RUNTIME_FOLDER, runtime_files, vendor_record

PAGE_FILES = ("index.html", "app.js", "preprocess.js")
MODEL_FILE, INFO_FILE = "model.onnx", "model.json"
# Under `imgcls serve --api-key` these two need the key; the rest is the public app shell.
KEYED_FILES = (INFO_FILE, MODEL_FILE)
SERVICE_WORKER = "sw.js"
DEFAULT_TOPK = 5
INT8_OPERATORS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv",
                            "QLinearMatMul", "ConvInteger", "MatMulInteger"})


def build_web_app(model_path: str | Path, output: str | Path, *, name: str | None = None,
                  onnx: Path | None = None) -> Path:
    """Write the app into the folder `output` (created; files there with the same names
    are replaced); returns the folder. `onnx`: the ONNX file to ship instead of the fp32
    export of `model_path` (the checked int8 file of that model)."""
    target = Path(output)
    if target.exists() and not target.is_dir():
        raise UserError(f"--output {target} is a file; the web export writes a folder")
    files = web_app_files(model_path, name=name, onnx=onnx)
    for relative, data in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def web_app_files(model_path: str | Path, *, name: str | None = None,
                  onnx: Path | None = None) -> dict[str, bytes]:
    """{path inside the app: bytes} for a model.safetensors, run directory or exported
    .onnx file (or the given `onnx` file of that model)."""
    model = onnx_bytes(onnx if onnx is not None else model_path)
    proto = parse_onnx(model, model_path)  # parsed once: metadata, outputs and operators
    metadata = onnx_metadata(proto, model_path)
    title = name or describe_model(metadata)
    files = {MODEL_FILE: model,
             INFO_FILE: _json(model_info(metadata, title, onnx_outputs(proto),
                                         onnx_precision(proto))),
             "manifest.webmanifest": _json(manifest(title))}
    files.update({f"icon-{size}.png": icon_png(size) for size in ICON_SIZES})
    static = resources.files("imgcls.webapp").joinpath("static")
    files.update({page: static.joinpath(page).read_bytes() for page in PAGE_FILES})
    files.update({f"{RUNTIME_FOLDER}/{file}": data for file, data in runtime_files().items()})
    files[SERVICE_WORKER] = service_worker(files, static.joinpath(SERVICE_WORKER).read_bytes())
    return files


def onnx_bytes(model_path: str | Path) -> bytes:
    """The model as ONNX: an .onnx file as it is, anything else exported (export.py)."""
    from imgcls.export.writers import export_model

    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise UserError(f"model file {path} does not exist")
        return path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="imgcls-web-") as folder:
        return export_model(path, "onnx", Path(folder) / MODEL_FILE).read_bytes()


def parse_onnx(model: bytes, source: str | Path) -> Any:
    """The onnx.ModelProto of the file's bytes; a UserError naming `source` when unreadable."""
    import onnx

    try:
        return onnx.load_model_from_string(model)
    except Exception as error:  # onnx raises its own untyped decode errors
        raise UserError(f"{source} is not a readable ONNX model ({error})") from None


def onnx_metadata(proto: Any, source: str | Path) -> dict[str, Any]:
    """The imgcls metadata export.py stores in the ONNX model's properties."""
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    if "imgcls" not in properties:
        raise UserError(f"{source} has no imgcls metadata; export it with `imgcls export`")
    return json.loads(properties["imgcls"])


def onnx_outputs(proto: Any) -> list[str]:
    """The graph's output names: an export from before `familiarity` has one."""
    return [output.name for output in proto.graph.output]


def onnx_precision(proto: Any) -> str:
    """`int8` for a quantized graph (QDQ or integer operators), else `fp32`: read from the
    graph itself, so an .onnx file given as it is gets the right name too."""
    return "int8" if any(node.op_type in INT8_OPERATORS for node in proto.graph.node) else "fp32"


def describe_model(metadata: dict[str, Any]) -> str:
    """`lenet5 on digits`: the architecture and, when known, the data it learned from."""
    architecture = str(metadata.get("architecture", {}).get("name", "model"))
    source = str(metadata.get("data", {}).get("source", "") or "")
    return f"{architecture} on {Path(source).name}" if source else architecture


def model_info(metadata: dict[str, Any], title: str, outputs: list[str] | None = None,
               precision: str = "fp32") -> dict[str, Any]:
    """model.json: everything the page needs to feed the model and label its answer. With a
    trust record and a `familiarity` output, the page answers `unknown` below `threshold`
    (prediction.py's rule); otherwise both are null and it answers as it always did."""
    from imgcls.export.writers import FAMILIARITY_NAME, INPUT_NAME, OUTPUT_NAME

    trust = metadata.get("trust") or {}
    familiarity = FAMILIARITY_NAME if FAMILIARITY_NAME in (outputs or []) and trust else None

    shape = metadata["input"]
    class_names = list(metadata["class_names"])
    return {"name": title, "class_names": class_names,
            "input": {key: shape[key] for key in ("channels", "height", "width")},
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
            "familiarity_name": familiarity,
            "threshold": trust.get("threshold") if familiarity else None,
            "topk": min(DEFAULT_TOPK, len(class_names)), "precision": precision,
            "resize_pass_order": resize_pass_order(),
            "runtime": f"onnxruntime-web {vendor_record()['version']}"}


def resize_pass_order() -> str:
    """Which of its two resize passes this Pillow runs first (the page must do the same to
    get the same pixels): from 13 on, vertical first when the height shrinks much more."""
    import PIL

    major = int(PIL.__version__.split(".")[0])
    return "pillow13" if major >= 13 else "horizontal_first"


def manifest(title: str) -> dict[str, Any]:
    """The web app manifest: what a phone needs to install the page as an app."""
    icons = [{"src": f"icon-{size}.png", "sizes": f"{size}x{size}", "type": "image/png",
              "purpose": "any maskable"} for size in ICON_SIZES]
    return {"name": f"imgcls: {title}", "short_name": "imgcls", "start_url": "./",
            "scope": "./", "display": "standalone", "background_color": "#f9fafb",
            "theme_color": "#2563eb", "icons": icons}


def service_worker(files: dict[str, bytes], body: bytes) -> bytes:
    """sw.js: the list of files to cache and a version that changes with any of them (so a
    new export replaces the old cache), followed by the static worker code."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode() + b"\0" + hashlib.sha256(files[relative]).digest())
    shell = ["./", *sorted(path for path in files if path not in KEYED_FILES)]
    header = ('"use strict";\n'
              f"const VERSION = {json.dumps(digest.hexdigest()[:16])};\n"
              f"const SHELL = {json.dumps(shell)};\n"
              f"const KEYED = {json.dumps(list(KEYED_FILES))};\n")
    return header.encode() + body


def _json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
