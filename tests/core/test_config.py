from __future__ import annotations

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
