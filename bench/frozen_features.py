"""Frozen backbone: 20 epochs on cached features vs one pass of feature extraction.

Last run (bench/results/frozen_features.json):
    machine: 2-core AMD EPYC VM, AVX512 with native bf16 (--precision auto: bf16), no GPU,
    torch 2.14.1, 2 threads, shared: load average 3.1-3.9 from other people's jobs
    resnet18 at 32 px, 2,048 train / 256 val / 256 test images
      one feature-extraction pass over the train split    15.9 s  (129 images/s)
      20 cached epochs, first step to last validation     22.4 s  = 1.41x the pass (bar 1.5x)
        of which: the steps of epochs 2-20 0.3 s, validation 2.3 s (its features once:
        ~2 s), last.pt and the best model written after epochs 3.9 s: 1.16x without them
      uncached (the path augmentation forces): 12.8 and 23.4 s of steps per epoch, 26 s a
        later epoch with validation: 115x a later cached epoch (0.23 s)
      2 epochs cached vs uncached, same seed: test accuracy 0.2461 and 0.2461
    The VM's speed swings by 2-4x with the other jobs (the uncached epoch took 5.5 s in an
    earlier run); the ratios compare runs of one process, minutes apart.

A generated folder of 2,560 PNGs (32 px RGB, 10 classes of noisy patterns; about 2,050 in the
train split), resnet18 (CIFAR stem) started from a model file that 1 epoch on 300 other
images of the same classes wrote. With --freeze-backbone --augment none the backbone runs
once over the train images (and once over val), then the head trains on the features:
the bar (issue 11) is 20 epochs at most 1.5x one extraction pass. For comparison the
uncached path (what --augment on forces) runs 2 epochs, and the cached path 2 epochs as
well: with the same seed both must reach the same test accuracy.

    python bench/frozen_features.py [--images 2560] [--epochs 20] [--model resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import imgcls
from imgcls.training import feature_cache, trainer

from machine import describe

RESULTS = Path(__file__).parent / "results" / "frozen_features.json"
# What the training loop does besides its steps, timed apart (trainer's own functions).
LOOP_PARTS = ("_validate", "save_best_model", "cpu_copy", "save_state", "_finish_files")
CLASSES = 10
SIZE = 32


def pattern(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 32 px RGB image of class `label`: a stripe frequency and orientation, a colour, a
    random phase and noise, so the classes overlap a little."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    angle = np.pi * (label % 5) / 5
    frequency = 2 + 2 * (label // 5)
    wave = np.sin(2 * np.pi * frequency * (xs * np.cos(angle) + ys * np.sin(angle))
                  + rng.uniform(0, 2 * np.pi))
    colour = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256]) / 255
    pixels = 0.5 + 0.35 * wave[..., None] * (0.5 + colour) + rng.normal(0, 0.25, (SIZE, SIZE, 3))
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def write_folder(root: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % CLASSES
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pattern(label, rng)).save(folder / f"{index:05d}.png")
    return root


@contextmanager
def timed_extraction(spans: list[tuple[float, float]]) -> Iterator[None]:
    """Record when each pass over the train images to cache their features starts and ends
    (it starts at the first step of a run)."""
    original: Callable[..., None] = feature_cache._cache_train_features

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        original(*args)
        spans.append((started, time.perf_counter()))

    feature_cache._cache_train_features = timed
    try:
        yield
    finally:
        feature_cache._cache_train_features = original


@contextmanager
def time_spent(module: Any, names: tuple[str, ...]) -> Iterator[dict[str, float]]:
    """Seconds spent in each of `module`'s functions `names` while the block runs."""
    spent = dict.fromkeys(names, 0.0)
    originals = {name: getattr(module, name) for name in names}

    def timed(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return call

    for name in names:
        setattr(module, name, timed(name))
    try:
        yield spent
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


@contextmanager
def uncached() -> Iterator[None]:
    """The path augmentation forces: the backbone runs every step (pixels unchanged here)."""
    original = feature_cache.why_not_cached
    feature_cache.why_not_cached = lambda *args: "the benchmark compares the uncached path"
    try:
        yield
    finally:
        feature_cache.why_not_cached = original


def frozen_run(data: Path, init: Path, output: Path, epochs: int, model: str) -> dict[str, Any]:
    """One --freeze-backbone run: its epochs' times, each with its validation, and the time
    the loop spends validating and writing files (last.pt, the best model)."""
    marks: list[float] = []
    started = time.perf_counter()
    with time_spent(trainer, LOOP_PARTS) as spent:
        run_dir = imgcls.train(
            data=str(data), model=model, init_from=str(init / "model.safetensors"),
            freeze_backbone=True, augment="none", epochs=epochs, output=str(output),
            show_progress=False, on_epoch=lambda record: marks.append(time.perf_counter()),
        )
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "epochs": epochs,
        "marks": marks,  # perf_counter at the end of each epoch's validation
        # Each epoch's training steps (history.jsonl; the first one caches the features).
        "step_seconds": [round(record["seconds"], 3) for record in history],
        # After the first: one epoch's steps and validation.
        "later_epoch_seconds": (marks[-1] - marks[0]) / max(1, epochs - 1),
        "call_seconds": time.perf_counter() - started,  # with setup, test and report
        "loop_parts_seconds": spent,  # all epochs; _finish_files: test, report, after the loop
        "test_accuracy": metrics["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        os.environ.setdefault("IMGCLS_CACHE_DIR", str(work / "cache"))  # not the user's cache
        data = write_folder(work / "patterns", args.images, seed=0)
        # The model file to start from: 1 epoch on other images of the same classes.
        init = imgcls.train(data=str(write_folder(work / "pretrain", 300, seed=1)),
                            model=args.model, epochs=1, augment="none",
                            output=str(work / "init"), show_progress=False)
        spans: list[tuple[float, float]] = []
        with timed_extraction(spans):
            cached = frozen_run(data, init, work / "cached", args.epochs, args.model)
            cached_short = frozen_run(data, init, work / "cached2", 2, args.model)
        with uncached():
            full = frozen_run(data, init, work / "uncached2", 2, args.model)
    (extraction_start, extraction_end), marks = spans[0], cached.pop("marks")
    extraction = extraction_end - extraction_start
    # All `epochs` cached epochs, from the first step (where the extraction starts) to the
    # last validation, against one extraction; then the same without the files the loop
    # writes after each epoch (last.pt, and the best model when it improved), which every
    # run writes, cached or not.
    loop = marks[-1] - extraction_start
    parts = cached["loop_parts_seconds"]
    files = parts["save_best_model"] + parts["cpu_copy"] + parts["save_state"]
    for run in (cached_short, full):
        run.pop("marks")
    result = {
        "machine": describe(),
        "load_average": os.getloadavg(),  # the machine is shared: others' work slows ours
        "model": args.model, "images": args.images, "image_size": SIZE,
        "extraction_seconds": extraction,  # one pass over the train split
        "cached_loop_seconds": loop,
        "ratio_loop_to_extraction": loop / extraction,
        "ratio_without_file_writes": (loop - files) / extraction,
        "cached": cached,
        "cached_2_epochs": cached_short,
        "uncached_2_epochs": full,
        "uncached_epoch_over_cached_epoch": (full["later_epoch_seconds"]
                                             / cached["later_epoch_seconds"]),
        "same_accuracy": cached_short["test_accuracy"] == full["test_accuracy"],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"{args.epochs} cached epochs / one extraction pass: "
          f"{result['ratio_loop_to_extraction']:.2f}x, "
          f"{result['ratio_without_file_writes']:.2f}x without writing checkpoints "
          "(bar: <= 1.5x)")


if __name__ == "__main__":
    main()
