from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from imgcls.config import TrainConfig
from imgcls.errors import UserError


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(data="fashion-mnist", model="vgg11_bn", lr=0.01, dropout=0.2)
    file = tmp_path / "config.yaml"
    file.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(file) == config


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("model: lenet5\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match="learning_rate"):
        TrainConfig.from_yaml(file)


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("epochs", 0, "--epochs"), ("lr", -1.0, "--lr"), ("batch_size", 0, "--batch-size"),
    ("optimizer", "lbfgs", "--optimizer"), ("dropout", 1.5, "--dropout"),
    ("lr_mult", 0.5, "--lr-mult"),
])
def test_bad_values_are_named(field: str, value: object, flag: str) -> None:
    with pytest.raises(UserError, match=flag):
        TrainConfig(**{field: value}).validate()


def test_default_lr_follows_optimizer() -> None:
    assert TrainConfig(optimizer="sgd").resolved_lr == 0.1
    assert TrainConfig(optimizer="adam", lr=0.3).resolved_lr == 0.3


def test_a_config_is_frozen_and_changed_by_copy() -> None:
    config = TrainConfig.from_dict({"model": "lenet5", "epochs": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
    longer = dataclasses.replace(config, epochs=3)
    assert (config.epochs, longer.epochs) == (2, 3)
    assert longer.given == config.given == {"model", "epochs"}  # a copy keeps what was given


def test_a_recipe_fills_a_copy_where_nothing_was_given() -> None:
    config = TrainConfig.from_dict({"model": "lenet5", "lr": 0.5})
    filled, taken = config.with_recipe({"lr": 0.1, "optimizer": "sgd", "epochs": 7})
    assert taken == ["optimizer", "epochs"]
    assert (filled.lr, filled.optimizer, filled.epochs) == (0.5, "sgd", 7)
    assert (config.optimizer, config.epochs) == ("adamw", 10)  # the original stands
