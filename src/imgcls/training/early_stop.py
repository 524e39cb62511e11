"""Which epoch is best by the chosen validation metric, and when to stop waiting."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Metrics where smaller is better; the rest (accuracy, F1) are maximized.
MINIMIZED = ("val_loss",)


@dataclass
class BestTracker:
    metric: str = "val_acc"
    patience: int | None = None  # None: never stop early
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    def update(self, epoch: int, record: dict[str, float]) -> bool:
        """Record an epoch's metrics; True when it is the new best."""
        value = record.get(self.metric, float("nan"))
        if value != value:  # NaN: no validation split, so the latest epoch is the best known
            improved = True
        elif self.best_value is None:
            improved = True
        elif self.metric in MINIMIZED:
            improved = value < self.best_value
        else:
            improved = value > self.best_value
        if improved:
            self.best_value, self.best_epoch = value, epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
