"""The vendored onnxruntime-web files, checked against the hashes in VENDOR.json."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from imgcls.errors import UserError

VENDOR_PACKAGE = "onnxruntime-web"
RUNTIME_FOLDER = "ort"  # where the web app keeps them, next to index.html


def vendor_record() -> dict[str, Any]:
    """VENDOR.json: the package's version, source, licence and each file's sha256."""
    return json.loads(_vendor_dir().joinpath("VENDOR.json").read_text("utf-8"))


def runtime_files() -> dict[str, bytes]:
    """{file name: bytes} for the runtime and its licence. A file that is missing or differs
    from its recorded hash fails here: a broken install must not become a broken app."""
    record = vendor_record()
    files: dict[str, bytes] = {}
    for name, expected in record["files"].items():
        data = _read(name)
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise UserError(f"the vendored {VENDOR_PACKAGE} file {name} does not match its "
                            "sha256 in VENDOR.json; reinstall imgcls")
        files[name] = data
    files["LICENSE"] = _read("LICENSE")
    files["VENDOR.json"] = _read("VENDOR.json")
    return files


def _vendor_dir() -> Any:
    return resources.files("imgcls.webapp").joinpath("vendor", VENDOR_PACKAGE)


def _read(name: str) -> bytes:
    try:
        return _vendor_dir().joinpath(name).read_bytes()
    except OSError:
        raise UserError(f"the vendored {VENDOR_PACKAGE} file {name} is missing from this "
                        "install of imgcls (package data not installed?)") from None
