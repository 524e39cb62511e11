"""Recipes: named, measured training configurations (`--recipe NAME`, or `-c FILE`).

Each recipe is a YAML file in this folder holding TrainConfig settings, opening with its
evidence: the data, the mean and spread of test accuracy over seeds, the wall time, the
machine and the command. A recipe sets no data or output settings, so it applies to any
data set of its kind.

A network's default recipe (DEFAULTS) fills the settings the user left open when it trains
on small images (<= 64 px), so `imgcls train --data fashion-mnist` starts from the best
measured configuration for the network it trains; fine-tuning pretrained weights (what
`--model auto` does on photos) starts from FINE_TUNE_RECIPE, whatever the network.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from imgcls.errors import UserError

# The recipe that supplies a network's defaults on small images.
DEFAULTS = {
    "vgg_small": "vgg_small-small-images",
    "lenet5": "lenet5-small-images",
    "resnet20": "resnet20-small-images",
    "resnet32": "resnet20-small-images",
    "resnet56": "resnet20-small-images",
    "densenet_bc_40": "densenet_bc_40-small-images",
    "densenet_bc_100": "densenet_bc_40-small-images",
    "densenet_bc": "densenet_bc_40-small-images",
    "alexnet_small": "alexnet_small-small-images",
}
# What fine-tuning pretrained weights starts from when its settings are left open (the
# training/settle step that applies default recipes), whatever the network.
FINE_TUNE_RECIPE = "pretrained-finetune"
# Settings a recipe never carries: they belong to the data set and the run, not the recipe.
NOT_IN_RECIPES = frozenset({"data", "data_dir", "output", "seed", "split_file", "recipe"})


def list_recipes() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in resources.files(__name__)
                  .iterdir() if entry.name.endswith(".yaml"))


def recipe_name(given: object) -> str:
    """The recipe `given` names: its own name, with or without .yaml and in any case, or a
    network's name for that network's recipe (`--recipe vgg_small`)."""
    known = list_recipes()
    cleaned = str(given).strip().lower().removesuffix(".yaml")
    if cleaned in known:
        return cleaned
    if cleaned in DEFAULTS and DEFAULTS[cleaned] in known:
        return DEFAULTS[cleaned]
    raise UserError(f"unknown recipe {given!r}; known recipes: {', '.join(known)}, or a "
                    f"network's name for its recipe ({', '.join(sorted(DEFAULTS))}) "
                    f"(--recipe; or -c FILE for a file of your own)")


def load_recipe(given: object) -> dict[str, Any]:
    """A recipe's settings by name (see recipe_name)."""
    name = recipe_name(given)
    text = resources.files(__name__).joinpath(f"{name}.yaml").read_text()
    settings = yaml.safe_load(text) or {}
    leaked = sorted(set(settings) & NOT_IN_RECIPES)
    if leaked:  # a packaging mistake, caught by the tests
        raise ValueError(f"recipe {name} sets {', '.join(leaked)}")
    return settings


def default_recipe(model: str) -> str | None:
    """The recipe whose settings are `model`'s defaults on small images, if it has one."""
    name = DEFAULTS.get(model)
    return name if name in list_recipes() else None
