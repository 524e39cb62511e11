"""The training engine: schedules, early stopping, exact resume (SIGKILL, Ctrl-C, extension),
determinism, EMA and TensorBoard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import imgcls
from imgcls.config import TrainConfig
from imgcls.modelfile.artifact import read_weights
from imgcls.training.early_stop import BestTracker
from imgcls.training.schedule import lr_multiplier
from imgcls.training.state import load_state, save_state
from imgcls.utils.files import atomic_path

# A small, exactly repeatable run: fp32, deterministic kernels, fixed threads.
EXACT = {"model": "lenet5", "precision": "fp32", "deterministic": True, "threads": 1,
         "batch_size": 16}


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_state(run_dir / "last.pt")["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- schedules and early stopping --------------------------------------------------------

@pytest.mark.parametrize(("sched", "expected"), [
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
    ("step", [0.5, 1.0, 0.1, 0.1, 0.01]),  # decay every 2 epochs
    ("multistep", [0.5, 1.0, 1.0, 0.1, 0.1]),  # milestones at epoch 3
])
def test_schedule_shapes(sched: str, expected: list[float]) -> None:
    config = TrainConfig(sched=sched, epochs=5, warmup_epochs=1, decay_epochs=2,
                         decay_milestones=[3], decay_rate=0.1)
    multiplier = lr_multiplier(config, steps_per_epoch=2)
    assert [multiplier(2 * epoch) for epoch in range(5)] == pytest.approx(expected)


def test_cosine_and_onecycle() -> None:
    cosine = lr_multiplier(TrainConfig(sched="cosine", epochs=10, warmup_epochs=0), 10)
    assert cosine(0) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.5)
    assert cosine(100) == pytest.approx(0.0, abs=1e-9)
    onecycle = lr_multiplier(TrainConfig(sched="onecycle", epochs=10), 10)
    assert onecycle(0) == pytest.approx(1 / 25) and onecycle(30) == pytest.approx(1.0)
    assert onecycle(100) == pytest.approx(1 / 25e4)


def test_early_stopping_on_a_scripted_sequence() -> None:
    tracker = BestTracker(metric="val_loss", patience=2)
    stopped_at = None
    for epoch, loss in enumerate([0.9, 0.7, 0.75, 0.6, 0.65, 0.61, 0.5], start=1):
        tracker.update(epoch, {"val_loss": loss})
        if tracker.should_stop:
            stopped_at = epoch
            break
    assert stopped_at == 6 and tracker.best_epoch == 4 and tracker.best_value == 0.6
    accuracy = BestTracker(metric="val_acc", patience=1)
    assert accuracy.update(1, {"val_acc": 0.5}) and not accuracy.update(2, {"val_acc": 0.4})
    assert accuracy.should_stop


def test_the_kept_epoch_is_the_latest_within_one_standard_error_of_the_best() -> None:
    tracker = BestTracker(metric="val_acc", patience=3)
    accuracies = [0.80, 0.89, 0.85, 0.87, 0.88, 0.88]
    kept = [tracker.update(epoch, {"val_acc": value, "val_acc_se": 0.03})
            for epoch, value in enumerate(accuracies, start=1)]
    assert kept == [True, True, False, True, True, True]
    assert (tracker.best_epoch, tracker.best_value) == (2, 0.89)
    assert (tracker.kept_epoch, tracker.kept_value) == (6, 0.88)
    assert tracker.should_stop  # patience still waits on the strict best
    assert "epoch 6 (val_acc 0.8800, within one standard error" in tracker.describe_kept()
    # No standard error (as from a validation split of thousands, near zero): the strict best.
    strict = BestTracker(metric="val_acc")
    for epoch, value in enumerate([0.80, 0.89, 0.889], start=1):
        strict.update(epoch, {"val_acc": value, "val_acc_se": 0.0005})
    assert strict.kept_epoch == 2 and strict.describe_kept() == "best epoch 2"
    strict.update(4, {"val_acc": 0.89, "val_acc_se": 0.0005})
    assert "epoch 4 (val_acc 0.8900, level with the best, first reached at epoch 2)" in \
        strict.describe_kept()
    losses = BestTracker(metric="val_loss")
    for epoch, value in enumerate([0.9, 0.5, 0.54, 0.7], start=1):
        losses.update(epoch, {"val_loss": value, "val_loss_se": 0.05})
    assert (losses.best_epoch, losses.kept_epoch) == (2, 3)
    # A last.pt from before the kept epoch existed resumes keeping its best.
    resumed = BestTracker()
    resumed.load_state_dict({"metric": "val_acc", "patience": None, "best_value": 0.9,
                             "best_epoch": 4, "epochs_without_improvement": 1})
    assert (resumed.kept_epoch, resumed.kept_value) == (4, 0.9)


@pytest.mark.slow
def test_patience_stops_a_run_and_keeps_the_best(tmp_path: Path) -> None:
    # lr 0 after warmup: nothing improves, so patience 1 stops right after epoch 2.
    run_dir = imgcls.train(data="digits", model="lenet5", epochs=6, patience=1, lr=1e-9,
                           sched="constant", warmup_epochs=0, output=str(tmp_path / "run"),
                           show_progress=False)
    history = _history(run_dir)
    assert len(history) < 6
    kept = history[imgcls.load(run_dir).card.training.best_epoch - 1]
    best_acc = max(r["val_acc"] for r in history)
    assert best_acc - kept["val_acc"] <= kept["val_acc_se"] + 1e-9  # see early_stop
    # The validation step's standard error is accuracy's binomial one on the split's val.
    val_count = len(json.loads((run_dir / "split.json").read_text())["val"])
    expected = math.sqrt(kept["val_acc"] * (1 - kept["val_acc"]) / val_count)
    assert kept["val_acc_se"] == pytest.approx(expected, rel=1e-6)


# --- exact resume ------------------------------------------------------------------------

def _train_command(run_dir: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imgcls.cli", "train", "--data", "digits", "--model", "lenet5",
            "--epochs", str(epochs), "--batch-size", "16", "--precision", "fp32",
            "--deterministic", "--threads", "1", "--no-progress", "-o", str(run_dir), *extra]


def _wait_for_mid_epoch_state(process: subprocess.Popen, state_file: Path, epoch: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        if state_file.exists():
            position = load_state(state_file)["position"]
            if position["epoch"] >= epoch and position["step"] > 0:
                return
        time.sleep(0.05)
    raise AssertionError("no mid-epoch checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("exact") / "run"
    return imgcls.train(data="digits", epochs=3, output=str(run_dir), show_progress=False,
                        **EXACT)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(uninterrupted: Path,
                                                               tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(_train_command(run_dir, 3, "--save-every-steps", "7"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_mid_epoch_state(process, run_dir / "last.pt", epoch=2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert load_state(run_dir / "last.pt")["position"]["step"] > 0
    imgcls.resume(run_dir, show_progress=False)
    _assert_same_weights(_final_weights(run_dir), _final_weights(uninterrupted))
    _assert_same_weights(read_weights(run_dir / "model.safetensors"),
                         read_weights(uninterrupted / "model.safetensors"))
    assert [r["epoch"] for r in _history(run_dir)][-2:] == [2, 3]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_ctrl_c_saves_and_prints_the_resume_command(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen(_train_command(run_dir, 3, "--save-every-steps", "5"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_mid_epoch_state(process, run_dir / "last.pt", epoch=1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"--resume {run_dir}" in out and "Traceback" not in err
    imgcls.resume(run_dir, show_progress=False)
    _assert_same_weights(_final_weights(run_dir), _final_weights(uninterrupted))


def test_a_failed_save_leaves_the_previous_state(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    state_file = tmp_path / "last.pt"
    # Every key load_state requires of a checkpoint, so only the failed save is tested here.
    keys = ("model", "optimizer", "schedule", "scaler", "best", "rng")
    save_state(state_file, {"position": {"epoch": 1}, **{key: {} for key in keys}})

    def dies_half_way(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half of a checkpoint")
        raise OSError("killed while writing")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):
        save_state(state_file, {"position": {"epoch": 2}})
    assert load_state(state_file)["position"] == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_atomic_path_never_exposes_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("new but unfinished")
        raise RuntimeError
    assert target.read_text() == "old"


@pytest.mark.slow
def test_extending_a_finished_run_continues_its_schedule(tmp_path: Path) -> None:
    run_dir = imgcls.train(data="digits", epochs=3, warmup_epochs=1,
                           output=str(tmp_path / "run"), show_progress=False, **EXACT)
    peak_lr = TrainConfig(optimizer="adamw").resolved_lr
    imgcls.resume(run_dir, epochs=5, show_progress=False)
    history = _history(run_dir)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    steps = math.ceil(1437 / 16)  # digits' train split in batches of 16
    cosine = lr_multiplier(TrainConfig(epochs=5, warmup_epochs=1), steps)
    # Epoch 4 ends where a 5-epoch cosine is after 4 epochs: no new warmup, no restart.
    assert history[3]["lr"] == pytest.approx(peak_lr * cosine(4 * steps), rel=1e-6)
    assert 0 < history[3]["lr"] < peak_lr * 0.5
    assert history[4]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert math.isclose(history[2]["lr"], 0.0, abs_tol=1e-9)  # the original end


@pytest.mark.slow
def test_same_seed_deterministic_runs_are_identical(uninterrupted: Path, tmp_path: Path) -> None:
    again = imgcls.train(data="digits", epochs=3, output=str(tmp_path / "again"),
                         show_progress=False, **EXACT)
    _assert_same_weights(_final_weights(again), _final_weights(uninterrupted))


# --- EMA and TensorBoard -----------------------------------------------------------------

@pytest.mark.slow
def test_ema_weights_are_the_ones_saved(tmp_path: Path) -> None:
    run_dir = imgcls.train(data="digits", model="lenet5", epochs=2, ema=True, ema_decay=0.9,
                           tensorboard=True, output=str(tmp_path / "run"), show_progress=False)
    state = load_state(run_dir / "last.pt")
    saved = read_weights(run_dir / "model.safetensors")
    ema = {key.removeprefix("module."): value for key, value in state["ema"].items()
           if key.startswith("module.")}
    raw = state["model"]
    assert any(not torch.equal(saved[k], raw[k]) for k in saved if saved[k].is_floating_point())
    if imgcls.load(run_dir).card.training.best_epoch == 2:
        _assert_same_weights(saved, ema)
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert os.path.getsize(run_dir / "history.jsonl") > 0


@pytest.mark.slow
def test_config_yaml_repeats_the_run(uninterrupted: Path, tmp_path: Path) -> None:
    from imgcls.cli import main

    again = tmp_path / "repeat"
    assert main(["train", "-c", str(uninterrupted / "config.yaml"), "-o", str(again),
                 "--no-progress"]) == 0
    _assert_same_weights(_final_weights(again), _final_weights(uninterrupted))
    assert (again / "split.json").read_text() == (uninterrupted / "split.json").read_text()


@pytest.mark.slow
def test_flags_override_the_config_file(uninterrupted: Path, tmp_path: Path) -> None:
    from imgcls.cli import main

    assert main(["train", "-c", str(uninterrupted / "config.yaml"), "--epochs", "1",
                 "-o", str(tmp_path / "short"), "--no-progress"]) == 0
    assert len(_history(tmp_path / "short")) == 1
