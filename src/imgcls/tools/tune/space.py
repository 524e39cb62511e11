"""What each trial of `imgcls tune` samples, and the choices of tune's flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgcls.config import AUGMENTS, OPTIMIZERS, TrainConfig

# What a trial may sample; a setting the user fixes with a flag is left out.
SEARCHABLE = ("model", "optimizer", "lr", "weight_decay", "batch_size", "dropout", "augment")
TUNE_METRICS = ("val_f1_macro", "val_acc")
PRUNERS = ("median", "hyperband", "none")
BATCH_SIZES = (32, 64, 128, 256)
WEIGHT_DECAY_RANGE = (1e-6, 1e-2)  # log-uniform
DROPOUT_RANGE = (0.0, 0.5)
# Optimizers whose good learning rates lie in the same range share one lr parameter
# (lr_<family>): the sampler then learns each range separately. The ranges bracket
# config.DEFAULT_LR, the rates that train the registry's networks well from scratch.
LR_FAMILY = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "adam": "adam",
             "adamw": "adam", "adagrad": "adagrad", "rmsprop": "rmsprop"}
LR_RANGES = {"sgd": (1e-3, 0.5), "adam": (1e-4, 1e-2), "adagrad": (1e-3, 0.1),
             "rmsprop": (1e-5, 3e-3)}


@dataclass(frozen=True)
class SearchSpace:
    """What each trial samples. `models` None: the base config's model, fixed."""

    models: tuple[str, ...] | None = None
    optimizers: tuple[str, ...] = OPTIMIZERS
    fixed: frozenset[str] = frozenset()  # searchable settings the user fixed with a flag

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(name for name in SEARCHABLE
                     if name not in self.fixed and (name != "model" or self.models))

    def sample(self, trial: Any, base: TrainConfig) -> dict[str, Any]:
        """The TrainConfig settings this trial tries (only the searched ones)."""
        searched = self.searched
        chosen: dict[str, Any] = {}
        if "model" in searched:
            chosen["model"] = trial.suggest_categorical("model", list(self.models))
        if "optimizer" in searched:
            chosen["optimizer"] = trial.suggest_categorical("optimizer", list(self.optimizers))
        if "lr" in searched:
            family = LR_FAMILY[chosen.get("optimizer", base.optimizer)]
            low, high = LR_RANGES[family]
            chosen["lr"] = trial.suggest_float(f"lr_{family}", low, high, log=True)
        if "weight_decay" in searched:
            chosen["weight_decay"] = trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE,
                                                         log=True)
        if "batch_size" in searched:
            chosen["batch_size"] = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
        if "dropout" in searched:
            chosen["dropout"] = trial.suggest_float("dropout", *DROPOUT_RANGE)
        if "augment" in searched:
            chosen["augment"] = trial.suggest_categorical("augment", list(AUGMENTS))
        return chosen
