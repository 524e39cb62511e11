"""Frozen backbones train on cached features (the same head as without the cache, for a
fraction of the work), and --init-from takes the file's architecture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import yaml
from torch import nn

import imgcls
import imgcls.training.components as training_components
import imgcls.training.feature_cache as feature_cache
import imgcls.training.settle as settle
from imgcls.cli import main
from imgcls.config import TrainConfig
from imgcls.data.augment import build_augment, preset
from imgcls.modelfile.artifact import read_weights
from imgcls.models import create_model
from imgcls.models.pretrained import dropout_before_head

from imagefolder import write_folder


def _frozen_run(init: Path, output: Path, **settings: Any) -> Path:
    # dropout 0.3 puts a Dropout right before the head: it must stay on over cached features.
    options = {"model": "lenet5", "init_from": str(init / "model.safetensors"),
               "freeze_backbone": True, "augment": "none", "dropout": 0.3, "epochs": 2,
               "batch_size": 64, "precision": "fp32", "output": str(output), **settings}
    return imgcls.train(data="digits", show_progress=False, **options)


def _accuracy(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["accuracy"]


def _explained(run_dir: Path) -> int:
    """The images Grad-CAM runs for report.html: the mistakes it shows, and the one image
    that finds the size of the map it explains (evaluation/explain.py)."""
    from imgcls.evaluation.report import MAX_MISTAKES

    with (run_dir / "mistakes.csv").open() as stream:
        return min(MAX_MISTAKES, sum(1 for _ in stream) - 1) + 1


def _count_backbone_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch sizes the backbone's first layer sees in the runs that follow."""
    seen: list[int] = []
    build_model = training_components.build_model

    def counting(*args: Any, **kwargs: Any) -> nn.Module:
        model = build_model(*args, **kwargs)
        model.features[0].register_forward_pre_hook(lambda module, inputs: seen.append(
            len(inputs[0])))
        return model

    monkeypatch.setattr(training_components, "build_model", counting)
    return seen


@pytest.mark.slow
def test_cached_features_train_the_same_head_as_the_full_model(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = read_weights(digits_run / "model.safetensors")
    in_memory = _frozen_run(digits_run, tmp_path / "memory")
    # A limit of a few bytes sends the features to a memmap in the run directory.
    on_disk = _frozen_run(digits_run, tmp_path / "disk", cache_limit=1e-9)
    monkeypatch.setattr(feature_cache, "why_not_cached", lambda *args: "the test says so")
    uncached = _frozen_run(digits_run, tmp_path / "uncached")
    reference = read_weights(uncached / "model.safetensors")
    for run_dir in (in_memory, on_disk):
        weights = read_weights(run_dir / "model.safetensors")
        for key, tensor in reference.items():
            torch.testing.assert_close(weights[key], tensor, rtol=0, atol=1e-5, msg=key)
        assert _accuracy(run_dir) == _accuracy(uncached)
        assert not list(run_dir.glob(".features*")), "the disk cache is not left behind"
    # Without the cache too, the frozen backbone runs in eval mode: BatchNorm's running
    # statistics stay those of the file it started from.
    for key in ("features.2.running_mean", "features.6.running_var"):
        assert torch.equal(reference[key], start[key]), key
    assert not torch.equal(reference["fc.weight"], start["fc.weight"]), "the head trained"


@pytest.mark.slow
def test_the_backbone_sees_each_image_once(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _count_backbone_images(monkeypatch)
    run_dir = _frozen_run(digits_run, tmp_path / "run", epochs=3)
    split = json.loads((run_dir / "split.json").read_text())
    images = sum(len(split[part]) for part in ("train", "val", "test"))
    # Every image once over three epochs (train and val cached, test at the end), and the
    # one blank image that finds the dropout before the head. After training: the
    # validation images once more (the temperature is fitted on the finished network) and
    # the mistakes report.html explains with Grad-CAM.
    assert sum(seen) == images + 1 + len(split["val"]) + _explained(run_dir)


@pytest.mark.slow
def test_cached_features_under_tta_validate_as_the_full_model(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tta hflip: the cache validates on the mean of the image's and the mirror's logits,
    as the saved model predicts, and still trains on each train image once."""
    # Digits turn --tta off (a mirrored digit is another picture); the arithmetic tested here
    # does not care, so it stays on.
    monkeypatch.setattr(settle, "resolve_tta", lambda config, *args: config)
    seen = _count_backbone_images(monkeypatch)
    cached = _frozen_run(digits_run, tmp_path / "cached", tta="hflip")
    split = json.loads((cached / "split.json").read_text())
    # train once; val, test and the blank image that finds the dropout twice (with mirror);
    # then val again for the temperature (with mirror) and the explained mistakes (Grad-CAM
    # explains the plain forward: once)
    assert sum(seen) == (len(split["train"]) + 2 * (2 * len(split["val"]) + len(split["test"]) + 1)
                         + _explained(cached))
    monkeypatch.setattr(feature_cache, "why_not_cached", lambda *args: "the test says so")
    uncached = _frozen_run(digits_run, tmp_path / "uncached", tta="hflip")
    history = [[json.loads(line)["val_acc"] for line in (run / "history.jsonl").open()]
               for run in (cached, uncached)]
    assert history[0] == pytest.approx(history[1], abs=1e-6)
    assert _accuracy(cached) == _accuracy(uncached)
    architecture = yaml.safe_load((cached / "config.yaml").read_text())
    assert architecture["tta"] == "hflip"


def test_augmentation_says_why_features_are_not_cached() -> None:
    def reason(augment: str, **overrides: Any) -> str | None:
        config = TrainConfig(augment=augment, **overrides)
        pipeline = build_augment(preset(augment, hflip_ok=True, **config.augment_overrides()),
                                 image_size=32, channels=3)
        return feature_cache.why_not_cached(config, pipeline, distributed=False)

    assert "pass --augment none to cache" in reason("default")
    assert "--augment none without --shift --mixup" in reason("none", shift=0.1, mixup=0.2)
    assert reason("none") is None
    assert reason("none", hflip=0.0) is None  # an override that leaves the pixels alone


@pytest.mark.slow
def test_a_run_with_augmentation_says_it_once(digits_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    _frozen_run(digits_run, tmp_path / "run", augment="light", epochs=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if "features" in line]
    assert len(lines) == 1 and lines[0].startswith("features not cached: augmentation")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dropout", "expected"), [
    ("lenet5", 0.3, "hidden.5"), ("lenet5", 0.0, None), ("resnet18", 0.2, "avgpool.1"),
    ("vgg11", 0.5, "classifier.5"), ("alexnet", 0.5, None), ("densenet121", 0.2, "head_dropout"),
])
def test_dropout_before_head(name: str, dropout: float, expected: str | None) -> None:
    from imgcls.models import get_spec

    model = create_model(name, num_classes=3, in_channels=1, image_size=32, dropout=dropout)
    assert dropout_before_head(model, get_spec(name).head, (1, 32, 32)) == expected
    assert model.training  # the probe leaves the model as it was


# --- --init-from FILE: the file's architecture -----------------------------------------

def _cli_train(*arguments: str) -> int:
    return main(["train", "--epochs", "1", "--no-progress", "--precision", "fp32", *arguments])


@pytest.mark.slow
def test_init_from_alone_builds_the_files_network(digits_run: Path, tmp_path: Path) -> None:
    model_file = digits_run / "model.safetensors"
    output = tmp_path / "again"
    assert _cli_train("--init-from", str(model_file), "--data", "digits", "-o", str(output)) == 0
    config = yaml.safe_load((output / "config.yaml").read_text())
    assert (config["model"], config["channels"], config["image_size"]) == ("lenet5", 1, 32)
    trained = read_weights(output / "model.safetensors")
    assert {k: v.shape for k, v in trained.items()} == {
        k: v.shape for k, v in read_weights(model_file).items()}


@pytest.mark.slow
def test_init_from_alone_with_other_classes_replaces_the_head(
    digits_run: Path, tmp_path: Path
) -> None:
    shapes = write_folder(tmp_path / "shapes", per_class=8)
    output = tmp_path / "run"
    assert _cli_train("--init-from", str(digits_run), "--data", str(shapes), "-b", "8",
                      "-o", str(output)) == 0
    assert read_weights(output / "model.safetensors")["fc.weight"].shape == (3, 84)


def test_init_from_a_file_that_is_not_a_model(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.safetensors"
    assert _cli_train("--init-from", str(missing)) == 2
    assert capsys.readouterr().err.strip() == (
        f"imgcls: error: --init-from: model file {missing} does not exist; "
        "pass a run's model.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(foreign))
    assert _cli_train("--init-from", str(foreign)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not written by imgcls" in error[0]
