"""Planted label noise in Fashion-MNIST's training labels, found by `imgcls data labels`, and
what fixing it buys (issue 25).

Last run (2026-12-04): 2-core AMD EPYC VM, AVX512 with VNNI and native bf16, torch 2.14.1,
cleanlab 2.9.0, 2 threads, the machine otherwise idle; bench/results/label_noise-*.json.
`data labels` ran 5 folds of vgg_small --width 0.5 (auto), about 2 minutes each:

  planted noise   data labels   flagged   precision   recall   F1
  10% uniform     10m (605 s)   7,136     0.783       0.931    0.850
  20% uniform     10m (601 s)   13,146    0.862       0.945    0.902

  20% uniform, `imgcls train --time-budget B` (auto), official test split, seed 0:
    B      noisy labels   --exclude label_issues.csv   --relabel (suggestions)   clean labels
    5m     0.9302         0.9327                       0.9272                    -
    10m    0.9355         0.9353                       0.9312                    0.9450
  The fixes do NOT buy the 1 point issue 25 asks for, and at this budget no fix can: the clean
  row (the planted flips undone, the noisy row's config.yaml with `relabel: null`, so the same
  vgg_small width 1.5 for the same 13.99 epochs) is the ceiling, and it is 0.95 points above the
  noisy row. auto's short runs on the noisy labels (label smoothing 0.1, 14 epochs, train
  accuracy 0.76) learn little of the uniform noise to begin with, and the suggestions that are
  wrong (14% of the flagged) cost what the right ones gain.
  Not run yet: the class-pair flips, 5% noise, other seeds.

What it does. A seeded share of the 60,000 training labels is flipped, uniformly to another
class or within confusable class pairs (T-shirt <-> shirt, pullover <-> coat, sneaker <->
ankle boot), and written as
a relabel file: the files on disk stay as they are, imgcls reads the noisy labels through
`--relabel`. `imgcls data labels fashion-mnist --relabel noisy.csv --time-budget B` then
flags what it thinks is wrong; precision, recall and F1 are of the flagged set against the
planted flips (Fashion-MNIST's own label errors count against precision). With --trainings,
three `imgcls train --time-budget T` runs on the same noisy labels: as they are, with
`--exclude label_issues.csv`, and with the suggestions applied (`--relabel`), each scored on
the clean official test split.

    python bench/label_noise.py --noise 0.1 --kind uniform --budget 10m
    python bench/label_noise.py --noise 0.2 --kind uniform --budget 10m --trainings
    python bench/label_noise.py --noise 0.2 --kind uniform --trainings --rows clean --reuse-labels

A pair flip of 20% flips 20% of each paired class's labels (12% of all labels).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

PAIRS = ((0, 6), (2, 4), (7, 9))  # T-shirt/shirt, pullover/coat, sneaker/ankle boot
IMGCLS = [sys.executable, "-m", "imgcls.cli"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--kind", choices=("uniform", "pair"), default="uniform")
    parser.add_argument("--budget", default="10m", help="for `imgcls data labels`")
    parser.add_argument("--train-budget", default="10m", help="for each of the trainings")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trainings", action="store_true")
    parser.add_argument("--rows", default="noisy,exclude,relabel",
                        help="which trainings: noisy, exclude, relabel, and clean (the planted"
                             " flips undone: the ceiling any fix can reach)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/imgcls-bench-labels")
    parser.add_argument("--reuse-labels", action="store_true",
                        help="keep an earlier run's label_issues.csv (same noise and seed)")
    args = parser.parse_args()
    from machine import describe

    work = Path(args.work) / f"{args.kind}-{args.noise:g}-seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    planted, noisy = plant(work, args.noise, args.kind, args.seed)
    result: dict = {"machine": describe(), "command": " ".join(sys.argv),
                    "planted": len(planted)}
    started = time.perf_counter()
    issues = work / "labels" / "label_issues.csv"
    if not (args.reuse_labels and issues.is_file()):
        run([*IMGCLS, "data", "labels", "fashion-mnist", "--relabel", str(noisy), "--time-budget",
             args.budget, "--folds", str(args.folds), "--seed", str(args.seed),
             "--no-progress", "-o", str(work / "labels")])
        result["labels_seconds"] = round(time.perf_counter() - started, 1)
    flagged, suggested = read_issues(issues)
    result["detection"] = scores(flagged, planted)
    if args.trainings:
        result["test_accuracy"] = train_three(work, noisy, planted, flagged, suggested, args)
    trained = f"-train{args.train_budget}" if args.trainings else ""
    output = (Path(__file__).parent / "results"
              / f"label_noise-{args.kind}-{args.noise:g}{trained}.json")
    result = merged(output, result)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {output}")


def merged(output: Path, result: dict) -> dict:
    """Rows run on their own (--rows clean) join the earlier rows of the same setting."""
    if not output.is_file() or "test_accuracy" not in result:
        return result
    earlier = json.loads(output.read_text())
    if earlier.get("detection") != result["detection"]:
        return result  # another planting or another data labels run: nothing to join
    accuracy = {**earlier.get("test_accuracy", {}), **result["test_accuracy"]}
    return {**result, "test_accuracy": accuracy}


def plant(work: Path, noise: float, kind: str, seed: int) -> tuple[dict[str, int], Path]:
    """item -> noisy label for the flipped training items, and the relabel file saying so."""
    from imgcls.data.sources import load_source

    image_set = load_source("fashion-mnist", channels=None, image_size=None, data_dir=None)
    train = [i for i, item in enumerate(image_set.item_ids) if "/train/" in item]
    labels = image_set.labels.numpy()
    rng = np.random.default_rng(seed)
    partner = {a: b for pair in PAIRS for a, b in (pair, pair[::-1])}
    pool = train if kind == "uniform" else [i for i in train if labels[i] in partner]
    # A pair flip of 20% flips 20% of each paired class (co-teaching's "pair" noise), not 20%
    # of all labels, which would be a third of those classes.
    chosen = rng.choice(pool, size=round(noise * len(pool)), replace=False)
    planted = {}
    for index in chosen:
        given = int(labels[index])
        new = partner[given] if kind == "pair" else int((given + rng.integers(1, 10)) % 10)
        planted[f"#{image_set.item_ids[index].rsplit('/', 1)[1]}"] = new
    names = image_set.class_names
    noisy = work / "noisy.csv"
    write_relabel(noisy, {item: names[label] for item, label in planted.items()})
    return planted, noisy


def write_relabel(path: Path, labels: dict[str, str]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        writer.writerows(sorted(labels.items()))


def read_issues(path: Path) -> tuple[set[str], dict[str, str]]:
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    flagged = {row["item"] for row in rows if row["is_issue"] == "1"}
    return flagged, {row["item"]: row["suggested"] for row in rows if row["is_issue"] == "1"}


def scores(flagged: set[str], planted: dict[str, int]) -> dict:
    found = len(flagged & set(planted))
    precision = found / len(flagged) if flagged else 0.0
    recall = found / len(planted) if planted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": len(flagged), "planted_found": found, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4)}


def train_three(work: Path, noisy: Path, planted: dict[str, int], flagged: set[str],
                suggested: dict[str, str], args: argparse.Namespace) -> dict:
    from imgcls.data.sources import load_source

    names = load_source("fashion-mnist", channels=None, image_size=None,
                        data_dir=None).class_names
    fixed = {item: names[label] for item, label in planted.items()}
    fixed.update(suggested)  # the suggestions over the noisy labels
    relabeled = work / "noisy+suggested.csv"
    write_relabel(relabeled, fixed)
    settings = {"noisy": ["--relabel", str(noisy)],
                "exclude": ["--relabel", str(noisy), "--exclude",
                            str(work / "labels" / "label_issues.csv")],
                "relabel": ["--relabel", str(relabeled)],
                "clean": []}
    accuracy = {}
    for name in args.rows.split(","):
        flags = settings[name]
        output = work / f"train-{name}"
        run([*IMGCLS, "train", "--data", "fashion-mnist", "--time-budget", args.train_budget,
             "--seed", str(args.seed), "--no-progress", "--output", str(output),
             "--overwrite", *flags])
        accuracy[name] = json.loads((output / "metrics.json").read_text())["accuracy"]
        print(name, accuracy[name], flush=True)
    return accuracy


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
