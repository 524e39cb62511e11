"""`imgcls tune`: workers sharing one Optuna study, pruning, the files written, user errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from PIL import Image
from rich.console import Console

import imgcls
from imgcls.cli.tools import main as tune_main
from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.tools.tune import EpochReporter, SearchSpace, open_storage, tune

SRC = Path(__file__).resolve().parents[2] / "src"
# Tiny trials: lenet5 on digits, one thread each (two workers share the 2 test cores).
TRIAL_FLAGS = ["--data", "digits", "--model", "lenet5", "--epochs", "2", "--batch-size", "128",
               "--threads", "1",
               "--precision", "fp32", "--no-channels-last"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two `imgcls tune` processes, 2 trials each, on one SQLite study."""
    root = tmp_path_factory.mktemp("tune")
    storage = f"sqlite:///{root / 'tune.db'}"
    command = [sys.executable, "-m", "imgcls.cli.tools", "tune", *TRIAL_FLAGS, "--trials", "2",
               "--storage", storage, "--study", "digits", "--output", str(root / "out")]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    workers = [subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    seconds = time.perf_counter() - started
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output
    return {"root": root, "storage": storage, "pids": {w.pid for w in workers},
            "outputs": outputs, "seconds": seconds}


@pytest.mark.multiprocess
@pytest.mark.slow
def test_both_workers_trials_are_in_one_study(two_workers: dict[str, Any]) -> None:
    study = optuna.load_study(study_name="digits", storage=two_workers["storage"])
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(states=finished)
    assert len(trials) == 4
    assert {trial.user_attrs["worker"] for trial in trials} == two_workers["pids"]
    for pid in two_workers["pids"]:
        assert sum(trial.user_attrs["worker"] == pid for trial in trials) == 2
    for trial in trials:  # each trial's run is in DIR/trial-<number>/
        run_dir = two_workers["root"] / "out" / f"trial-{trial.number}"
        assert (run_dir / "config.yaml").is_file()
        assert len(trial.intermediate_values) in (1, 2)  # one report per epoch
    print(f"\n2 workers x 2 trials: {two_workers['seconds']:.1f}s wall")


@pytest.mark.multiprocess
@pytest.mark.slow
def test_the_best_config_trains(two_workers: dict[str, Any], tmp_path: Path) -> None:
    best_file = two_workers["root"] / "out" / "best.yaml"
    config = TrainConfig.from_yaml(best_file)
    study = optuna.load_study(study_name="digits", storage=two_workers["storage"])
    assert config.output is None
    assert config.metric == "val_f1_macro"
    assert config.lr == pytest.approx(study.best_trial.user_attrs["config"]["lr"])
    values = {**config.to_dict(), "epochs": 1, "output": str(tmp_path / "again")}
    run_dir = imgcls.train(data=values.pop("data"), model=values.pop("model"),
                           show_progress=False, **values)
    assert (run_dir / "model.safetensors").is_file()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_the_files_describe_the_study(two_workers: dict[str, Any]) -> None:
    out = two_workers["root"] / "out"
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # Each worker writes the study as it sees it when it ends: the later one sees all four.
    assert 2 <= len(rows) <= 4
    assert {"number", "state", "value", "lr", "optimizer", "duration_s", "worker"} <= set(rows[0])
    with Image.open(out / "history.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert "best config:" in "".join(two_workers["outputs"])


# --- in-process search with a stub training: pruning, files, failures ---------------------

def _stub_train(curves: dict[int, list[float]], seen: dict[int, int]) -> Any:
    """A train_fn reporting curves[trial number] one epoch at a time (default: good)."""

    def train_fn(config: TrainConfig, on_epoch: EpochReporter) -> Path:
        number = on_epoch.trial.number
        for epoch, value in enumerate(curves.get(number, [0.8, 0.85, 0.9, 0.92]), start=1):
            seen[number] = epoch
            on_epoch({"epoch": epoch, "val_f1_macro": value, "val_acc": value})
        return Path(config.output)

    return train_fn


@pytest.mark.slow
def test_a_poor_trial_is_pruned_and_the_files_list_it(tmp_path: Path) -> None:
    seen: dict[int, int] = {}
    curves = {5: [0.1, 0.1, 0.1, 0.1]}  # after 5 good trials (MedianPruner's startup)
    result = tune(TrainConfig(data="digits", model="lenet5", epochs=4), trials=6,
                  study_name="stub", storage=f"sqlite:///{tmp_path / 't.db'}",
                  output=tmp_path / "out", sampler_seed=0, console=Console(quiet=True),
                  train_fn=_stub_train(curves, seen))
    states = [trial.state.name for trial in result.study.trials]
    assert states == ["COMPLETE"] * 5 + ["PRUNED"]
    assert seen[5] == 2  # never pruned at the first epoch, then at once
    assert result.best.value == pytest.approx(0.92)
    files = result.files
    best = TrainConfig.from_yaml(files["best.yaml"])
    assert best.output is None and best.model == "lenet5" and best.epochs == 4
    assert yaml.safe_load(files["best.yaml"].read_text())["lr"] == best.lr
    with files["trials.csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["state"] for row in rows] == ["complete"] * 5 + ["pruned"]
    assert rows[5]["epochs"] == "2"
    assert all(float(row["lr"]) > 0 and row["batch_size"] in {"32", "64", "128", "256"}
               for row in rows)
    with Image.open(files["history.png"]) as image:
        image.verify()


@pytest.mark.slow
def test_a_flag_fixes_a_setting_and_models_can_be_searched(tmp_path: Path) -> None:
    space = SearchSpace(models=("lenet5", "resnet18"), optimizers=("sgd", "adam"),
                        fixed=frozenset({"batch_size"}))
    result = tune(TrainConfig(data="digits", batch_size=48, epochs=1), trials=4,
                  study_name="space", storage=f"sqlite:///{tmp_path / 't.db'}",
                  output=tmp_path / "out", space=space, pruner="hyperband", sampler_seed=1,
                  console=Console(quiet=True), train_fn=_stub_train({}, {}))
    assert len(result.study.trials) == 4  # the loop below checks every one
    for trial in result.study.trials:
        config = trial.user_attrs["config"]
        assert config["batch_size"] == 48 and "batch_size" not in trial.params
        assert config["model"] in ("lenet5", "resnet18")
        assert config["optimizer"] in ("sgd", "adam")
        family = "sgd" if config["optimizer"] == "sgd" else "adam"
        assert trial.params[f"lr_{family}"] == config["lr"]


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    def train_fn(config: TrainConfig, on_epoch: EpochReporter) -> Path:
        if on_epoch.trial.number == 0:
            raise RuntimeError("CUDA out of memory (simulated)")
        on_epoch({"epoch": 1, "val_f1_macro": 0.5})
        return Path(config.output)

    result = tune(TrainConfig(data="digits", model="lenet5", epochs=1), trials=2,
                  study_name="fail", storage=f"sqlite:///{tmp_path / 't.db'}",
                  output=tmp_path / "out", console=Console(quiet=True), train_fn=train_fn)
    assert [t.state.name for t in result.study.trials] == ["FAIL", "COMPLETE"]
    assert "out of memory" in result.study.trials[0].user_attrs["error"]


def test_the_reporter_reports_each_epoch_and_prunes() -> None:
    class FakeTrial:
        def __init__(self, prune_at: int) -> None:
            self.reports: list[tuple[float, int]] = []
            self.prune_at = prune_at

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) >= self.prune_at

    trial = FakeTrial(prune_at=3)
    reporter = EpochReporter(trial, "val_acc")
    reporter({"epoch": 1, "val_acc": 0.5, "val_f1_macro": 0.1})
    reporter({"epoch": 2, "val_acc": 0.7, "val_f1_macro": 0.1})
    with pytest.raises(optuna.TrialPruned):
        reporter({"epoch": 3, "val_acc": 0.6, "val_f1_macro": 0.1})
    assert trial.reports == [(0.5, 1), (0.7, 2), (0.6, 3)]
    assert reporter.best == 0.7


# --- user mistakes: one line, exit 2, before any training ---------------------------------

@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--storage", "tune.db"], "is not a database URL"),
        (["--storage", "nosuchdb://x/y"], "cannot open --storage"),
        (["--storage", "sqlite:///no/such/folder/t.db"], "the folder of a sqlite"),
        (["--storage", "postgresql://me:secret@127.0.0.1:1/db"], "cannot open --storage"),
        (["--search-models", "lenet5,resnet81"], "unknown model 'resnet81'"),
        (["--search-models", "lenet5,lenet5"], "more than once"),
        (["--search-optimizers", "adam,adamx"], "unknown optimizer(s) adamx"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--pruner", "random"], "invalid choice"),
        (["--metric", "val_loss"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line(flags: list[str], message: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["tune", "--data", "digits", "--trials", "1", "--storage",
            f"sqlite:///{tmp_path / 't.db'}"]
    code = tune_main([*base, *flags])
    error = capsys.readouterr().err
    assert code == 2
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert "secret" not in error
    assert not (tmp_path / "tune").exists()  # nothing trained


@pytest.mark.slow
def test_a_mistake_found_by_a_trial_is_one_line_too(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = tune_main(["tune", "--data", str(tmp_path / "missing"), "--model", "lenet5",
                      "--trials", "3", "--storage", f"sqlite:///{tmp_path / 't.db'}",
                      "--output", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("imgcls: error: data source") and len(error.splitlines()) == 1
    study = optuna.load_study(study_name="imgcls", storage=f"sqlite:///{tmp_path / 't.db'}")
    assert len(study.trials) == 1  # the search stopped at the first trial


@pytest.mark.slow
def test_joining_a_study_with_another_search_is_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 't.db'}"
    options = dict(trials=1, study_name="s", storage=storage, output=tmp_path / "out",
                   console=Console(quiet=True), train_fn=_stub_train({}, {}))
    tune(TrainConfig(data="digits", model="lenet5", epochs=1), **options)
    with pytest.raises(UserError, match="pass another --study"):
        tune(TrainConfig(data="digits", model="resnet18", epochs=1), **options)
    with pytest.raises(UserError, match="pass another --study"):
        tune(TrainConfig(data="digits", model="lenet5", epochs=1), metric="val_acc", **options)


@pytest.mark.slow
def test_another_studys_trials_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "out" / "trial-0").mkdir(parents=True)
    (tmp_path / "out" / "trial-0" / "model.safetensors").write_bytes(b"theirs")
    with pytest.raises(UserError, match="holds a trial of another study"):
        tune(TrainConfig(data="digits", model="lenet5", epochs=1), trials=1, study_name="new",
             storage=f"sqlite:///{tmp_path / 't.db'}", output=tmp_path / "out",
             console=Console(quiet=True), train_fn=_stub_train({}, {}))
    assert (tmp_path / "out" / "trial-0" / "model.safetensors").read_bytes() == b"theirs"


@pytest.mark.slow
def test_open_storage_waits_for_sqlite_locks(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 30
