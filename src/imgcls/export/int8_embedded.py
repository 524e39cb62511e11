"""An int8 ONNX file written with `imgcls export --quantize int8 -o FILE` carries its check:
the record and the stored check images, in its metadata (key `imgcls_int8`). It may be served
or copied to a machine that has no model.safetensors beside it, so there is no fp32 model to
fall back on: opened on a CPU of another kind, it re-checks itself on those images (well under
a second for the digits LeNet-5) and is refused, with a one-line error, where it fails.
Torch-free.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict
from pathlib import Path

from imgcls.errors import UserError
from imgcls.export.int8_record import (
    CheckImages,
    Int8Check,
    check_from,
    pack_check_images,
    read_check_images,
    rechecked,
)
from imgcls.export.session import OnnxRunner
from imgcls.utils.cpus import cpu_kind
from imgcls.utils.files import atomic_path

METADATA_KEY = "imgcls_int8"


def write_with_check(source: Path, target: Path, check: Int8Check,
                     images: CheckImages) -> Path:
    """`source` (the cached int8 file) copied to `target` with its check in the metadata."""
    import onnx

    document = {"check": asdict(check),
                "images": base64.b64encode(pack_check_images(images)).decode()}
    model = onnx.load(str(source))
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(document))
    with atomic_path(target) as temporary:
        onnx.save(model, str(temporary))
    return target


def refuse_if_untrusted(runner: OnnxRunner) -> None:
    """Raise UserError where `runner`'s file carries an int8 check from a CPU of another kind
    and fails it here; a file without one (any fp32 export) passes untouched."""
    text = runner.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        return
    check, images = _read(text, runner.path)
    kind = cpu_kind()
    if check.cpu_kind == kind:
        return
    here = rechecked(check, runner.probabilities(images.images), images, kind)
    if not here.passed:
        raise UserError(f"{runner.path}: int8 model refused on this CPU: {here.describe()} "
                        f"(checked on {check.cpu_kind}); serve the fp32 export, or export "
                        "int8 again on this machine")


def _read(text: str, path: Path) -> tuple[Int8Check, CheckImages]:
    try:
        document = json.loads(text)
        check = check_from(document["check"])
        images = read_check_images(io.BytesIO(base64.b64decode(document["images"])))
    except (ValueError, KeyError, TypeError) as error:
        raise _unreadable(path, str(error)) from None
    if images is None:
        raise _unreadable(path, "its images do not load")
    return check, images


def _unreadable(path: Path, why: str) -> UserError:
    return UserError(f"{path}: its int8 check ({METADATA_KEY}) cannot be read ({why}); "
                     "export it again")
