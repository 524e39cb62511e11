"""Split control (--split-file, --group-by) and class imbalance (--balance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import imgcls
from imgcls.config import TrainConfig
from imgcls.data.sources import load_source
from imgcls.data.split import groups_from_pattern, make_split
from imgcls.training.run import _balance, batch_order
from imgcls.training.trainer import train as run_training

from imagefolder import write_folder


def test_group_by_keeps_each_group_in_one_split() -> None:
    item_ids = [f"c{k % 3}/object{k // 4:02d}_shot{k % 4}.png" for k in range(240)]
    labels = np.array([k % 3 for k in range(240)])
    groups = groups_from_pattern(item_ids, r"(object\d+)_")
    assert len(set(groups)) == 60
    split = make_split(labels, preset=None, item_ids=item_ids, groups=groups, seed=3)
    part_of = {}
    for name in ("train", "val", "test"):
        for index in getattr(split, name):
            assert part_of.setdefault(groups[index], name) == name, groups[index]
    assert len(split.test) > 0 and len(split.val) > 0
    assert sorted(np.concatenate([split.train, split.val, split.test])) == list(range(240))


def test_unmatched_names_are_their_own_group() -> None:
    groups = groups_from_pattern(["a/x_1.png", "a/plain.png", "b/plain.png"], r"(x)_")
    assert groups[0] == "x" and groups[1] != groups[2]


@pytest.mark.slow
def test_split_file_is_reused(tmp_path: Path) -> None:
    image_set = load_source("digits")
    split = make_split(image_set.labels, preset=None, item_ids=image_set.item_ids, seed=42,
                       val=0.2, test=0.2)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(split.to_json(image_set)))
    run_dir = imgcls.train(data="digits", model="lenet5", epochs=1, split_file=str(split_file),
                           output=str(tmp_path / "run"), show_progress=False)
    written = json.loads((run_dir / "split.json").read_text())
    assert written == json.loads(split_file.read_text())
    assert json.loads((run_dir / "metrics.json").read_text())["num_samples"] == len(split.test)


def test_balance_weights_are_inverse_frequency() -> None:
    counts = torch.tensor([90, 10])
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = _balance("weights", counts, labels, torch.device("cpu"))["loss_weights"]
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 20]))
    sample_weights = _balance("sampler", counts, labels, torch.device("cpu"))["sample_weights"]
    order = torch.cat(batch_order(100, 10, torch.Generator().manual_seed(0), torch.device("cpu"),
                               sample_weights))
    rare_share = (labels[order] == 1).float().mean().item()
    assert 0.35 < rare_share < 0.65  # about half, against 10% without the sampler
    assert _balance("none", counts, labels, torch.device("cpu")) == {}


@pytest.mark.slow
def test_imbalance_warning_and_sampler_run(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=16)
    for file in sorted((root / "top").iterdir())[3:]:
        file.unlink()  # 3 against 16: over the 3:1 threshold
    console = Console(record=True, width=200)
    run_training(TrainConfig(data=str(root), model="lenet5", epochs=1, image_size=28,
                             output=str(tmp_path / "plain")), console=console,
                 show_progress=False)
    assert "--balance" in console.export_text()
    console = Console(record=True, width=200)
    run_training(TrainConfig(data=str(root), model="lenet5", epochs=1, image_size=28,
                             balance="sampler", output=str(tmp_path / "balanced")),
                 console=console, show_progress=False)
    assert "--balance" not in console.export_text()


@pytest.mark.slow
def test_eval_rebuilds_a_grouped_split_without_split_json(tmp_path: Path) -> None:
    # A model file that travelled alone: eval re-splits from its settings, --group-by included.
    root = write_folder(tmp_path / "data", per_class=12)
    run_dir = imgcls.train(data=str(root), model="lenet5", epochs=1, image_size=28,
                           group_by=r"_(\d+)\.", output=str(tmp_path / "run"),
                           show_progress=False)
    expected = json.loads((run_dir / "metrics.json").read_text())["num_samples"]
    (run_dir / "split.json").unlink()
    assert imgcls.evaluate(run_dir / "model.safetensors", str(root))["num_samples"] == expected
