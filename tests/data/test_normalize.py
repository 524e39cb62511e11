"""Normalization statistics (train split only) and their exact reuse at prediction time."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import imgcls
from imgcls.data.normalize import Normalizer, compute_stats


def test_meanstd_standardizes_each_channel() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=generator)
    images[:, 1] //= 4  # a darker channel
    stats = compute_stats(images, "meanstd")
    normalized = Normalizer(stats)(images)
    assert torch.allclose(normalized.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalized.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)


def test_minmax_maps_the_range_to_zero_one() -> None:
    images = torch.tensor([[[[10, 200]], [[0, 255]]]], dtype=torch.uint8)  # 1 x 2 x 1 x 2
    stats = compute_stats(images, "minmax")
    assert stats["min"] == [10 / 255, 0.0] and stats["max"] == [200 / 255, 1.0]
    assert torch.allclose(Normalizer(stats)(images).flatten(), torch.tensor([0.0, 1, 0, 1]))


@pytest.mark.slow
def test_minmax_run_predicts_identically_after_loading(tmp_path: Path) -> None:
    run_dir = imgcls.train(data="digits", model="lenet5", epochs=1, normalize="minmax",
                           precision="fp32", output=str(tmp_path / "run"), show_progress=False)
    predictor = imgcls.load(run_dir)
    assert predictor.card.normalization["mode"] == "minmax"
    with open(run_dir / "test_predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    metrics = imgcls.evaluate(run_dir, "digits")
    assert metrics["num_samples"] == len(rows)
    correct = sum(row["true"] == row["predicted"] for row in rows)
    assert metrics["accuracy"] == correct / len(rows)
