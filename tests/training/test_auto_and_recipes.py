"""--model auto, recipes (--recipe, a model's default recipe on small images) and the
up-front estimate of a run's length."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import yaml
from rich.console import Console

import imgcls
from imgcls.cli import build_parser
from imgcls.config import DEFAULT_LR, TrainConfig
from imgcls.errors import UserError
from imgcls.recipes import list_recipes, load_recipe, recipe_name
from imgcls.training import auto_model
from imgcls.training.auto_model import choose
from imgcls.training.components import architecture_of
from imgcls.training.settle import resolve_tta

CPU = torch.device("cpu")


def _choose(monkeypatch: pytest.MonkeyPatch, budget_s: float | None, image_size: int = 28,
            rate: float = 2600.0, train_images: int = 54_000) -> auto_model.Choice:
    monkeypatch.setattr(auto_model, "training_rate", lambda *args, **kwargs: rate)
    return choose(image_size=image_size, channels=1, num_classes=10, train_images=train_images,
                  budget_seconds=budget_s, device=CPU, precision="auto")


def test_auto_trains_vgg_small_on_small_images_and_a_mobile_net_on_photos(monkeypatch) -> None:
    assert _choose(monkeypatch, None).model == "vgg_small"
    # From scratch (no weights at hand): the fastest photo network.
    assert _choose(monkeypatch, None, image_size=128).model == "mobilenet_v3_small"


def test_a_larger_budget_buys_a_wider_network(monkeypatch) -> None:
    short = _choose(monkeypatch, 120)
    medium = _choose(monkeypatch, 600)
    long = _choose(monkeypatch, 3600)
    assert short.width == 0.5  # width 1: about 4 epochs fit, width 0.5 about 16
    assert medium.width == 1.5
    assert long.width == 2.0
    assert "epochs" in long.reason


def test_every_recipe_is_a_valid_config_that_opens_with_its_evidence() -> None:
    assert "vgg_small-small-images" in list_recipes()
    for name in list_recipes():
        settings = load_recipe(name)
        TrainConfig.from_dict(settings, origin=name).validate()
        text = (imgcls.recipes.resources.files("imgcls.recipes") / f"{name}.yaml").read_text()
        assert text.startswith("#") and "Evidence" in text.split("\n\n")[0], name


@pytest.mark.parametrize("given", ["nope", "", "vgg", "resnet18", "../recipes/x.yaml", 5])
def test_an_unknown_recipe_names_the_known_ones(given: object) -> None:
    with pytest.raises(UserError, match="vgg_small-small-images"):
        TrainConfig.from_dict({"recipe": given})


@pytest.mark.parametrize(("given", "name"), [
    ("vgg_small-small-images", "vgg_small-small-images"),
    ("VGG_small-small-images.yaml", "vgg_small-small-images"),
    ("vgg_small", "vgg_small-small-images"),  # a network's name: its recipe
    ("densenet_bc_100", "densenet_bc_40-small-images"),
])
def test_a_recipe_by_file_name_or_network(given: str, name: str) -> None:
    assert recipe_name(given) == name
    assert load_recipe(given) == load_recipe(name)


def test_flags_override_a_named_recipe() -> None:
    args = build_parser().parse_args(["train", "--recipe", "vgg_small-small-images",
                                      "--lr", "0.05"])
    config = TrainConfig.from_dict({"recipe": args.recipe, "lr": args.lr})
    recipe = load_recipe("vgg_small-small-images")
    assert config.lr == 0.05 and config.optimizer == recipe["optimizer"]
    assert config.model == recipe["model"]
    # Another optimizer given: the recipe's rate (its optimizer's) is not taken.
    adam = TrainConfig.from_dict({"recipe": "vgg_small-small-images", "optimizer": "adam"})
    assert adam.lr is None and adam.resolved_lr == DEFAULT_LR["adam"] != recipe["lr"]
    assert adam.batch_size == recipe["batch_size"]


@pytest.mark.slow
def test_auto_and_the_default_recipe_on_digits(tmp_path) -> None:
    run_dir = imgcls.train(data="digits", epochs=1, optimizer="adamw", lr=3e-3,
                           output=str(tmp_path / "run"), show_progress=False)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    recipe = load_recipe("vgg_small-small-images")
    assert config["model"] == "vgg_small"
    assert config["recipe"] == "vgg_small-small-images"
    # Given settings stand; the rest come from the recipe.
    assert (config["optimizer"], config["lr"], config["epochs"]) == ("adamw", 3e-3, 1)
    assert config["sched"] == recipe["sched"]
    assert config["label_smoothing"] == recipe["label_smoothing"]
    # The file repeats the run: a repeat applies no recipe over it.
    repeat = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert repeat.recipe == "vgg_small-small-images" and repeat.optimizer == "adamw"


@pytest.mark.slow
def test_a_run_says_up_front_how_long_it_will_take(tmp_path, capsys) -> None:
    imgcls.train(data="digits", model="lenet5", epochs=2, output=str(tmp_path / "run"),
                 show_progress=False)
    out = capsys.readouterr().out
    assert "estimated" in out and "per epoch" in out and "in all (2 epochs)" in out


def test_a_budget_of_few_full_width_epochs_trains_half_width(monkeypatch) -> None:
    # Two minutes where vgg_small trains at 655 images/s (fp32, no AVX512): 1.2 epochs of
    # width 1, about 4 of width 0.5.
    choice = _choose(monkeypatch, 120, rate=655)
    assert (choice.model, choice.width) == ("vgg_small", 0.5)
    # Ten minutes there: 6 epochs of width 1, 20 of width 0.5.
    assert _choose(monkeypatch, 600, rate=655).width == 0.5
    assert _choose(monkeypatch, 1200, rate=655).width is None  # 12 of width 1, 5 of 1.5


def test_a_small_data_set_needs_enough_steps_not_only_epochs(monkeypatch) -> None:
    # digits: 1,437 training images, 12 steps an epoch; vgg_small at 1,040 images/s.
    # 37 s buy ~10 epochs of width 1.5 (what epochs alone chose; 72 steps of it scored 0.23),
    # 120 steps: too few. Width 1 gets ~23 epochs, 270 steps.
    assert _choose(monkeypatch, 37, rate=1040, train_images=1437).width is None
    # 5 s: 10 epochs of width 0.5 by the estimate, 120 steps: lenet5.
    tiny = _choose(monkeypatch, 5, rate=1040, train_images=1437)
    assert tiny.model == "lenet5" and "120 steps" in tiny.reason
    # A minute: ~40 epochs of width 1.5, ~480 steps: enough.
    assert _choose(monkeypatch, 60, rate=1040, train_images=1437).width == 1.5


def test_a_budget_too_short_for_two_epochs_of_half_width_vgg_small_trains_lenet5(
        monkeypatch) -> None:
    # 30 s at 655 images/s: 0.3 epochs of width 1, 1.0 of width 0.5.
    choice = _choose(monkeypatch, 30, rate=655)
    assert choice.model == "lenet5" and "--width 0.5" in choice.reason
    assert _choose(monkeypatch, 30, rate=2600).width == 0.5  # 1.2 of width 1, 4 of 0.5


@pytest.mark.parametrize(("hflip_ok", "kept"), [(True, "hflip"), (False, "none")])
def test_tta_hflip_only_where_a_mirror_is_the_same_class(hflip_ok: bool, kept: str) -> None:
    config = TrainConfig(data="digits", tta="hflip")
    console = Console(record=True, width=200)
    config = resolve_tta(config, SimpleNamespace(hflip_ok=hflip_ok), console)
    assert config.tta == kept
    said = console.export_text()
    assert ("tta: hflip off — a mirror image of digits can be another class" in said) is (
        not hflip_ok)
    assert architecture_of(config, SimpleNamespace(channels=1, image_size=28,
                                                   class_names=["a", "b"])).kwargs.get(
        "tta", "none") == kept


def test_tta_setting_is_checked() -> None:
    with pytest.raises(UserError, match="--tta takes one of: none, hflip"):
        TrainConfig(tta="vflip").validate()
