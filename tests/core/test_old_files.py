"""Files written by an earlier imgcls work unchanged: tests/core/files/v480dbf0/ holds a run's
model.safetensors, config.yaml and metrics.json as imgcls wrote them at commit 480dbf0 (before
the packages were reorganised and the config frozen):
`imgcls train --data digits --model lenet5 --epochs 2 --threads 2`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgcls
from imgcls.config import TrainConfig

OLD_RUN = Path(__file__).parent / "files" / "v480dbf0"


@pytest.fixture
def old_model(tmp_path: Path) -> Path:
    """A copy, so that nothing a test writes beside the file lands in the repository."""
    copy = tmp_path / "model.safetensors"
    shutil.copy(OLD_RUN / "model.safetensors", copy)
    return copy


def test_an_old_model_file_evaluates_to_the_metrics_it_was_written_with(old_model: Path) -> None:
    recorded = json.loads((OLD_RUN / "metrics.json").read_text())
    metrics = imgcls.evaluate(old_model, "digits", split="test")
    for key in ("accuracy", "f1_macro", "precision_macro", "num_samples", "confusion_matrix"):
        assert metrics[key] == recorded[key], key


def test_an_old_model_file_predicts_with_its_calibration(old_model: Path) -> None:
    predictor = imgcls.load(old_model)
    assert predictor.card.model_name == "lenet5" and predictor.card.trust is not None
    blank = np.zeros((predictor.image_size, predictor.image_size), dtype=np.uint8)
    (answer,) = predictor.predict(blank)
    assert answer.error is None and len(answer.topk) == 5
    assert answer.familiarity is not None  # the trust record's `unknown` rule applies


def test_load_takes_the_backend_the_readme_names(old_model: Path) -> None:
    eager, folded = imgcls.load(old_model), imgcls.load(old_model, backend="torch-folded")
    assert (eager.backend_name, folded.backend_name) == ("torch", "torch-folded")
    pixels = np.random.default_rng(0).integers(0, 256, (4, 1, 32, 32), dtype=np.uint8)
    expected, found = eager.array_outputs(pixels)[0], folded.array_outputs(pixels)[0]
    np.testing.assert_allclose(found, expected, atol=1e-5)


def test_an_old_config_yaml_loads_and_repeats_the_run() -> None:
    config = TrainConfig.from_yaml(OLD_RUN / "config.yaml")
    assert (config.data, config.model, config.epochs) == ("digits", "lenet5", 2)

