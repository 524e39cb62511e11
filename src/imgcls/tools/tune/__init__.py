"""Hyperparameter search with Optuna: `imgcls tune` (the [tune] extra).

One study lives in an Optuna storage (an SQLite file by default, PostgreSQL to share it
between machines). Every `imgcls tune` process on the same storage and study name is one
worker: it runs its own `trials` trials, each a normal imgcls run in DIR/trial-<number>/,
reporting the chosen validation metric after every epoch so the pruner can stop poor trials
early. At the end each worker writes, from the whole study (every worker's trials):

  DIR/best.yaml     the best trial's full TrainConfig: `imgcls train -c DIR/best.yaml` repeats it
  DIR/trials.csv    one row per trial: number, state, value, searched settings, duration
  DIR/history.png   the value of every trial and the best so far

space.py (what a trial samples) · trial.py (one trial: sample, train, report each epoch) ·
storage.py (Optuna storage, pruner, study) · results.py (the files and the summary) ·
search.py (tune(): the checks, then the trials). Optuna is imported only where it is used.
"""

from imgcls.tools.tune.results import TuneResult, best_config, print_summary, write_results
from imgcls.tools.tune.search import tune
from imgcls.tools.tune.space import PRUNERS, SEARCHABLE, TUNE_METRICS, SearchSpace
from imgcls.tools.tune.storage import DEFAULT_STORAGE, make_pruner, open_storage
from imgcls.tools.tune.trial import EpochReporter

__all__ = [
    "DEFAULT_STORAGE", "PRUNERS", "SEARCHABLE", "TUNE_METRICS", "EpochReporter", "SearchSpace",
    "TuneResult", "best_config", "make_pruner", "open_storage", "print_summary", "tune",
    "write_results",
]
