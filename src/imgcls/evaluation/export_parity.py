"""The parity check of an ONNX or TorchScript export: the exported file against the model file
it came from, on the first test images of the data given, else of the built-in data set the
model records, else on seeded noise. Here, not in export/: the check runs the Predictor
(predict/parity.py), which sits above export in the imports."""

from __future__ import annotations

from pathlib import Path

from imgcls.data.builtin import builtin_name
from imgcls.export.writers import parity_images
from imgcls.modelfile.artifact import read_card
from imgcls.predict.parity import Parity, check_parity


def check_export(model_path: str | Path, exported: str | Path, *, samples: int,
                 data: str | None = None, data_dir: str | None = None) -> Parity | None:
    """The export against the model on up to `samples` images; None when `samples` <= 0
    (the check skipped)."""
    if samples <= 0:
        return None
    card = read_card(model_path)
    data = data or builtin_name(card.data_source or "")
    images, source = parity_images(card, samples, data, data_dir)
    return check_parity(model_path, exported, images, source)
