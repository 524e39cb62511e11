"""`imgcls data stats | split | preview`, and training with per-flag augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import imgcls
from imgcls.cli import main
from imgcls.data.sources import load_source
from imgcls.data.split import make_split, split_from_json


@pytest.mark.slow
def test_stats_prints_train_split_statistics(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "stats", "digits", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    image_set = load_source("digits")
    split = make_split(image_set.labels, preset=None, item_ids=image_set.item_ids, seed=0)
    train = image_set.images[torch.as_tensor(split.train)].double() / 255
    assert f"{train.mean().item():.4f}" in out and f"{train.std(correction=0).item():.4f}" in out


def test_split_writes_a_reusable_file(tmp_path: Path) -> None:
    output = tmp_path / "split.json"
    assert main(["data", "split", "digits", "--val", "0.2", "--test", "0.1", "--seed", "5",
                 "-o", str(output)]) == 0
    split = split_from_json(json.loads(output.read_text()), load_source("digits"))
    assert len(split.val) == pytest.approx(0.2 * 1797, abs=10)
    assert len(split.test) == pytest.approx(0.1 * 1797, abs=10)


@pytest.mark.slow
def test_preview_writes_a_grid(tmp_path: Path) -> None:
    output = tmp_path / "preview.png"
    assert main(["data", "preview", "fashion-mnist", "--augment", "strong", "--samples", "3",
                 "--variants", "2", "-o", str(output)]) == 0
    with Image.open(output) as grid:
        width, height = grid.size
    assert width == height >= 3 * 64  # 3 samples x (original + 2), tiles of >= 64 px


@pytest.mark.slow
def test_training_with_mixup_cutmix_and_other_flags(tmp_path: Path) -> None:
    run_dir = imgcls.train(data="digits", model="lenet5", epochs=2, mixup=0.2, cutmix=1.0,
                           rotate=10.0, noise=0.02, output=str(tmp_path / "run"),
                           show_progress=False)
    config = imgcls.load(run_dir).card.training.config
    assert config["mixup"] == 0.2 and config["rotate"] == 10.0
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] > 0.5


def test_unknown_preset_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--augment", "wild", "--epochs", "1"]) == 2
    assert "wild" in capsys.readouterr().err
