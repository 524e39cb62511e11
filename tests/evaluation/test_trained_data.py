"""What needs the data a model was trained on (imgcls calibrate, export --quantize int8)
takes the data its card records; a file that records none is refused in one line naming the
flag that supplies it, and the file is left as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import imgcls
from imgcls.errors import UserError
from imgcls.evaluation.int8_export import export_int8
from imgcls.modelfile.artifact import load_model, read_card, save_model

OLD_MODEL = Path(__file__).parents[1] / "core" / "files" / "v480dbf0" / "model.safetensors"


@pytest.fixture
def unrecorded(tmp_path: Path) -> Path:
    """A model file whose card records no training data (written without a data record)."""
    model, card = load_model(OLD_MODEL)
    path = tmp_path / "model.safetensors"
    save_model(path, model, dataclasses.replace(card, data=None))
    assert read_card(path).data_source is None
    return path


def test_calibrate_names_the_data_flag(unrecorded: Path) -> None:
    before = unrecorded.read_bytes()
    with pytest.raises(UserError, match=r"records no training data; pass --data with the data "
                                        r"it was trained on \(calibration fits"):
        imgcls.calibrate(unrecorded)
    assert unrecorded.read_bytes() == before


def test_int8_export_names_the_check_data_flag(unrecorded: Path) -> None:
    with pytest.raises(UserError, match=r"records no training data; pass --check-data with the "
                                        r"data it was trained on \(int8 calibrates"):
        export_int8(unrecorded, data=None, data_dir=None, max_accuracy_drop=1.0)
    assert not (unrecorded.parent / "model.backends").exists()


def test_the_recorded_data_is_what_a_file_says() -> None:
    assert read_card(OLD_MODEL).data_source == "digits"
