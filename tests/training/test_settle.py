"""A run's config is settled once (training/settle.py) and then frozen: training reads it, never
assigns to it, and config.yaml is exactly the settled config."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console

import imgcls.training.auto_model as auto_model
from imgcls.config import DEFAULT_LR, TrainConfig
from imgcls.recipes import FINE_TUNE_RECIPE, load_recipe
from imgcls.training import trainer
from imgcls.training.run import Run
from imgcls.training.settle import settle
from imgcls.training.state import FINGERPRINT_KEY


def _prepared(image_size: int = 28, hflip_ok: bool = False, train_images: int = 1000) -> Any:
    """What settle reads of the prepared data, without loading any."""
    image_set = SimpleNamespace(image_size=image_size, channels=1, hflip_ok=hflip_ok,
                                class_names=[str(k) for k in range(10)])
    return SimpleNamespace(image_set=image_set, split=SimpleNamespace(train=range(train_images)))


def _settle(config: TrainConfig, **data: Any) -> TrainConfig:
    return settle(config, _prepared(**data), device=torch.device("cpu"),
                  console=Console(quiet=True))


def test_settling_decides_what_was_left_open_and_settling_again_changes_nothing() -> None:
    raw = TrainConfig.from_dict({"data": "digits", "tta": "hflip", "epochs": 2})
    settled = _settle(raw)
    assert (settled.model, settled.recipe, settled.tta) == (
        "vgg_small", "vgg_small-small-images", "none")
    assert (raw.model, raw.recipe, raw.tta) == ("auto", None, "hflip")  # a new config
    repeated = TrainConfig.from_dict(yaml.safe_load(settled.to_yaml()))
    assert _settle(repeated) == settled  # config.yaml repeats the run: nothing left to settle


def test_auto_within_a_budget_settles_to_a_concrete_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_model, "training_rate", lambda *args, **kwargs: 655.0)
    settled = _settle(TrainConfig(data="digits", time_budget="30s"), train_images=60_000)
    assert settled.model == "lenet5" and settled.recipe == "lenet5-small-images"


def test_fine_tuning_pretrained_weights_takes_the_fine_tuning_recipe() -> None:
    """Pretrained weights fine-tuned whole take the measured fine-tuning recipe, on photos and
    on small images alike (a small-image recipe is a from-scratch one); flags given win, and a
    recipe's rate stays with its optimizer."""
    weights = {"data": "photos", "model": "mobilenet_v3_small", "pretrained": "weights.pth"}
    recipe = load_recipe(FINE_TUNE_RECIPE)
    for image_size in (96, 28):
        settled = _settle(TrainConfig.from_dict(weights), image_size=image_size)
        assert settled.recipe == FINE_TUNE_RECIPE
        assert {name: getattr(settled, name) for name in recipe} == recipe
    given = _settle(TrainConfig.from_dict({**weights, "batch_size": 8, "lr": 1e-4}))
    assert (given.batch_size, given.lr, given.label_smoothing) == (8, 1e-4,
                                                                   recipe["label_smoothing"])
    # SGD given without --lr: not adamw's rate, a share of SGD's own (resolve_fine_tune_lr).
    sgd = _settle(TrainConfig.from_dict({**weights, "optimizer": "sgd"}))
    assert sgd.optimizer == "sgd" and sgd.lr == pytest.approx(DEFAULT_LR["sgd"] / 4)
    # Only the head trains (a frozen backbone) or no weights: no fine-tuning recipe.
    frozen = _settle(TrainConfig.from_dict({**weights, "freeze_backbone": True}))
    scratch = _settle(TrainConfig.from_dict({**weights, "pretrained": "none"}))
    assert frozen.recipe == scratch.recipe == "none"


def test_a_settled_config_refuses_assignment() -> None:
    settled = _settle(TrainConfig(data="digits", model="lenet5"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settled.epochs = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settled, "model", "vgg_small")  # noqa: B010


def _train_recording(monkeypatch: pytest.MonkeyPatch, config: TrainConfig) -> tuple[Path, Run]:
    """Train `config`; the run directory and the Run the loop trained."""
    runs: list[Run] = []
    loop = trainer._loop

    def recording(run: Run, show_progress: bool) -> Path:
        runs.append(run)
        return loop(run, show_progress)

    monkeypatch.setattr(trainer, "_loop", recording)
    given = dataclasses.replace(config)
    run_dir = trainer.train(config, show_progress=False, console=Console(quiet=True))
    assert config == given  # the caller's config is not changed
    return run_dir, runs[0]


def _assert_frozen_and_written(run: Run, run_dir: Path) -> TrainConfig:
    """The config the loop read is frozen; config.yaml holds exactly it."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.config.lr = 1.0  # type: ignore[misc]
    written = TrainConfig.from_yaml(run_dir / "config.yaml")
    expected = dataclasses.replace(run.recorded_config, time_budget=None)
    assert written == expected
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == expected.to_dict()
    return written


@pytest.mark.slow
def test_training_reads_a_frozen_config_and_writes_it(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    config = TrainConfig(data="digits", model="lenet5", epochs=0.5, batch_size=64,
                         threads=1, output=str(tmp_path / "run"))
    run_dir, run = _train_recording(monkeypatch, config)
    written = _assert_frozen_and_written(run, run_dir)
    assert written.recipe == "lenet5-small-images" and written.output == str(run_dir)
    # The model card records the same settled config.
    from imgcls.modelfile.artifact import read_card

    assert read_card(run_dir / "model.safetensors").training.config == written.to_dict()


@pytest.mark.slow
def test_init_from_trains_a_frozen_config(monkeypatch: pytest.MonkeyPatch, digits_run: Path,
                                          tmp_path: Path) -> None:
    model_file = str(digits_run / "model.safetensors")
    # As `imgcls train --init-from FILE` without --model gives it (cli.options).
    config = TrainConfig.from_dict({"data": "digits", "model": "auto", "init_from": model_file,
                                    "epochs": 0.3, "threads": 1,
                                    "output": str(tmp_path / "run")})
    run_dir, run = _train_recording(monkeypatch, config)
    written = _assert_frozen_and_written(run, run_dir)
    assert (written.model, written.channels, written.image_size) == ("lenet5", 1, 32)
    assert written.init_from == model_file and written.recipe == "lenet5-small-images"


def test_an_older_config_settles_only_what_it_left_open() -> None:
    """A config.yaml of an earlier version, without the keys added since (recipe, tta, ...):
    the default recipe fills only those, and the file's own settings stand."""
    older = {"data": "digits", "model": "lenet5", "epochs": 3, "optimizer": "sgd", "lr": 0.2}
    settled = _settle(TrainConfig.from_dict(older))
    assert (settled.recipe, settled.optimizer, settled.lr, settled.epochs) == (
        "lenet5-small-images", "sgd", 0.2, 3)


@pytest.mark.slow
def test_resuming_an_older_run_writes_its_settled_config(digits_run: Path,
                                                         tmp_path: Path) -> None:
    """A run directory of an earlier version: config.yaml without the recipe and other newer
    keys, last.pt without a fingerprint. Resuming settles the config and writes it, so the
    checkpoints it saves from then on match config.yaml and the run resumes again."""
    run_dir = tmp_path / "older"
    shutil.copytree(digits_run, run_dir)
    values = yaml.safe_load((run_dir / "config.yaml").read_text())
    for newer in ("recipe", "tta", "lr_mult", "calibrate", "ood_keep"):
        values.pop(newer)
    values["output"] = str(run_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    state = torch.load(run_dir / "last.pt", weights_only=True)
    del state[FINGERPRINT_KEY]
    torch.save(state, run_dir / "last.pt")
    trainer.resume(run_dir, epochs=4, show_progress=False, console=Console(quiet=True))
    written = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert (written.recipe, written.epochs, written.batch_size) == ("lenet5-small-images", 4, 64)
    trainer.resume(run_dir, epochs=5, show_progress=False, console=Console(quiet=True))
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2, 3, 4, 5]
