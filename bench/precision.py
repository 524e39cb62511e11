"""--precision auto vs plain fp32 (channels_last off) on Fashion-MNIST, side by side in one run.

Last run (2026-11-30, bench/results/precision_avx2.json), 2-core AMD EPYC VM, AVX2 only (no
native bf16), torch 2.14.1, 2 threads:
    auto means fp32 for every network here; the LeNet bf16 runs are skipped (emulated bf16)
    resnet18 at 28 px, 30 steps of 64: auto (fp32 + channels_last) 30.0 vs fp32 27.1
        images/s: 1.11x, channels_last alone.

The run before (2026-11-28, bench/results/precision.json), 2-core AMD EPYC VM with native
bf16 (AVX512-BF16), torch 2.14.1, 2 threads:
    auto means: lenet5 -> fp32 (bf16 is slower for it), resnet18 -> bf16
    lenet5, 5 epochs, forced bf16 vs fp32: 9,127 vs 11,825 images/s (0.77x),
        test accuracy 0.8953 vs 0.8948 (+0.05 points)
    resnet18 at 28 px, 30 steps of 64: auto (bf16 + channels_last) 116.1 vs fp32 62.3
        images/s: 1.86x (an earlier run: 1.99x)

Two measurements, because the answer depends on the network's size:
  1. lenet5, full runs (default 5 epochs) in both modes: images/s and final test accuracy.
  2. resnet18 (at 28 px), throughput only over a fixed number of steps (a full epoch would
     take minutes on a laptop CPU): where bf16 kernels pay off.
Each pair alternates (auto, fp32, auto, fp32...) so the machine's drift hits both alike.

    python bench/precision.py [--epochs 5] [--steps 30] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import imgcls
from imgcls.data.normalize import Normalizer, compute_stats
from imgcls.data.sources import load_source
from imgcls.models import create_model, get_spec
from imgcls.runtime import autocast, cpu_runs_bf16, pick_precision, precision_name

from machine import describe

RESULTS = Path(__file__).parent / "results" / "precision.json"
MODES = {"auto": {"precision": "auto"}, "fp32": {"precision": "fp32", "channels_last": False},
         "bf16": {"precision": "bf16"}}
# --precision auto keeps LeNet in fp32 on the CPU (bf16 measured slower there), so its full
# runs compare forced bf16 with fp32: the speed and accuracy that auto declines.
LENET_MODES = ("bf16", "fp32")
RESNET_MODES = ("auto", "fp32")


def full_run(workdir: Path, mode: str, epochs: int) -> dict:
    run_dir = imgcls.train(data="fashion-mnist", model="lenet5", epochs=epochs,
                           output=str(workdir / mode), show_progress=False, **MODES[mode])
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"images_per_s": statistics.median(r["images_per_s"] for r in history),
            "test_accuracy": metrics["accuracy"]}


def step_throughput(model_name: str, mode: str, steps: int, batch: int = 64) -> float:
    images = load_source("fashion-mnist").images[: steps * batch]
    normalized = Normalizer(compute_stats(images, "meanstd"))(images)
    labels = torch.randint(0, 10, (len(images),))
    device = torch.device("cpu")
    dtype = pick_precision(MODES[mode]["precision"], device,
                           cpu_bf16_pays=get_spec(model_name).cpu_bf16)
    model = create_model(model_name, num_classes=10, in_channels=1, image_size=28)
    channels_last = MODES[mode].get("channels_last", True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        normalized = normalized.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    batches = list(zip(normalized.split(batch), labels.split(batch), strict=True))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device, dtype):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for x, y in batches[:3]:  # warm-up: kernel selection, allocator
        step(x, y)
    started = time.perf_counter()
    for x, y in batches[3:]:
        step(x, y)
    return (len(batches) - 3) * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    # Without native bf16 kernels, forced bf16 runs emulated and many times slower: the
    # LeNet accuracy runs would take an hour and say nothing about bf16 hardware.
    native_bf16 = cpu_runs_bf16()
    lenet = {mode: [] for mode in LENET_MODES}
    resnet = {mode: [] for mode in RESNET_MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for lenet_mode, resnet_mode in zip(LENET_MODES, RESNET_MODES, strict=True):
                if repeat == 0 and native_bf16:  # full runs once: accuracy needs only one
                    lenet[lenet_mode].append(full_run(Path(scratch), lenet_mode, args.epochs))
                resnet[resnet_mode].append(step_throughput("resnet18", resnet_mode, args.steps))
    result = {
        "machine": describe(),
        "auto_means": {name: precision_name(pick_precision(
            "auto", torch.device("cpu"), cpu_bf16_pays=get_spec(name).cpu_bf16))
            for name in ("lenet5", "resnet18")},
        "resnet18_images_per_s": {m: statistics.median(resnet[m]) for m in RESNET_MODES},
        **(lenet_summary(lenet, args.epochs) if native_bf16 else
           {"lenet5_full_runs": "skipped: this CPU has no native bf16"}),
    }
    result["resnet18_ratio"] = (result["resnet18_images_per_s"]["auto"]
                                / result["resnet18_images_per_s"]["fp32"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def lenet_summary(lenet: dict[str, list[dict]], epochs: int) -> dict:
    bf16, fp32 = lenet["bf16"][0], lenet["fp32"][0]
    return {"lenet5_full_runs": {"epochs": epochs, "bf16": bf16, "fp32": fp32},
            "lenet5_bf16_images_per_s_ratio": bf16["images_per_s"] / fp32["images_per_s"],
            "lenet5_bf16_accuracy_difference_points":
                100 * (bf16["test_accuracy"] - fp32["test_accuracy"])}


if __name__ == "__main__":
    main()
