"""Augmentation cost per batch against one training step, same batches, interleaved.

Last run: see bench/results/augment_cost.json
    machine: x86_64, 2 threads, torch 2.14.1+cu130
    lenet5 on Fashion-MNIST, batch 128 x 1 x 28 x 28, medians of 60 interleaved rounds:
    train_step                      7.653 ms   100.0% of a step
    preset_none                     0.003 ms     0.0% of a step
    preset_light                    0.410 ms     5.4% of a step
    preset_default                  0.407 ms     5.3% of a step
    preset_strong                   2.347 ms    30.7% of a step
    ours_shift_flip                 0.392 ms     5.1% of a step
    kornia_crop_flip                1.669 ms    21.8% of a step
    ours_warp                       0.790 ms    10.3% of a step
    kornia_resized_crop_rotate      4.096 ms    53.5% of a step
    ours_cutmix                     0.658 ms     8.6% of a step
    kornia_cutmix                   1.398 ms    18.3% of a step

A training step is what the trainer does after augmentation: channels_last, normalize,
forward + backward + AdamW step (bf16 autocast where the CPU runs bf16 natively, else fp32).
Every round times each entry once, in turn, so the machine's drift (±30% on shared cores)
falls on all of them alike. Acceptance: the default preset costs <= 10% of a step.
The `kornia_*` entries are kornia's versions of the hand-written pieces, kept side by side
as the measured reason those pieces are hand-written.

    python bench/augment_cost.py [--rounds 60] [--calls 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from imgcls.data.augment import PRESETS, RandomShiftFlip, RandomWarp, build_augment, mix_batch
from imgcls.data.normalize import Normalizer, compute_stats
from imgcls.data.sources import load_source
from imgcls.models import create_model

from machine import describe

RESULTS = Path(__file__).parent / "results" / "augment_cost.json"
BATCH = 128


def training_step(images: torch.Tensor, labels: torch.Tensor) -> Callable[[torch.Tensor], None]:
    """One LeNet-5 step the way the trainer takes it, as a function of a uint8 batch."""
    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=28)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    normalizer = Normalizer(compute_stats(images[:10_000], "meanstd"))
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    batch_labels = labels[:BATCH]

    def step(batch: torch.Tensor) -> None:
        inputs = normalizer(batch.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(inputs), batch_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step.precision = "bf16" if bf16 else "fp32"  # type: ignore[attr-defined]
    return step


def contenders(images: torch.Tensor, labels: torch.Tensor) -> dict[str, Callable]:
    """Every timed entry, as a function of a uint8 batch."""
    import kornia.augmentation as K

    entries: dict[str, Callable] = {"train_step": training_step(images, labels)}
    for name, config in PRESETS.items():
        entries[f"preset_{name}"] = build_augment(config, image_size=28, channels=1)
    batch_labels = labels[:BATCH]
    kornia_crop = nn.Sequential(K.RandomCrop((28, 28), padding=1), K.RandomHorizontalFlip())
    kornia_warp = nn.Sequential(K.RandomResizedCrop((28, 28), scale=(0.35, 1.0)),
                                K.RandomRotation(15.0, p=1.0))
    kornia_cutmix = K.RandomCutMixV2()
    entries.update({
        "ours_shift_flip": RandomShiftFlip(padding=1, hflip=0.5),
        "kornia_crop_flip": lambda batch: kornia_crop(batch.float() / 255),
        "ours_warp": lambda batch: RandomWarp(0.35, 15.0)(batch.float() / 255),
        "kornia_resized_crop_rotate": lambda batch: kornia_warp(batch.float() / 255),
        "ours_cutmix": lambda batch: mix_batch(batch, batch_labels, 10, mixup_alpha=0.0,
                                               cutmix_alpha=1.0),
        "kornia_cutmix": lambda batch: kornia_cutmix(batch.float() / 255, batch_labels),
    })
    return entries


def measure(entries: dict[str, Callable], images: torch.Tensor, rounds: int,
            calls: int) -> dict[str, list[float]]:
    """Milliseconds per call of each entry, one sample per round, entries interleaved."""
    generator = torch.Generator().manual_seed(0)
    samples: dict[str, list[float]] = {name: [] for name in entries}
    for round_index in range(rounds + 2):  # the first two rounds warm up and are dropped
        batches = [images[torch.randint(len(images), (BATCH,), generator=generator)]
                   for _ in range(calls)]
        for name, entry in entries.items():
            started = time.perf_counter()
            for batch in batches:
                entry(batch)
            if round_index >= 2:
                samples[name].append((time.perf_counter() - started) * 1e3 / calls)
    return samples


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    step = statistics.median(samples["train_step"])
    return {
        name: {"median_ms": round(statistics.median(times), 4),
               "of_train_step": round(statistics.median(times) / step, 4)}
        for name, times in samples.items()
    }


def record_in_docstring(result: dict) -> None:
    """Rewrite this file's docstring with the numbers just measured."""
    source = Path(__file__)
    lines = [f"{name:<28} {entry['median_ms']:8.3f} ms  {100 * entry['of_train_step']:6.1f}% "
             f"of a step" for name, entry in result["timings"].items()]
    text = source.read_text()
    head, rest = text.split('"""', 2)[1], text.split('"""', 2)[2]
    head = re.sub(r"machine: .*", f"machine: {result['machine']}", head, count=1)
    head = re.sub(r"medians of \S+ interleaved", f"medians of {result['rounds']} interleaved",
                  head, count=1)
    head = re.sub(r"(interleaved rounds:\n)(?:    .*\n)+?(\nA training step)",
                  lambda m: m.group(1) + "".join(f"    {line}\n" for line in lines)
                  + m.group(2), head, count=1)
    source.write_text(f'"""{head}"""{rest}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=3, help="calls per entry per round")
    args = parser.parse_args()
    torch.manual_seed(0)
    image_set = load_source("fashion-mnist")
    entries = contenders(image_set.images, image_set.labels)
    precision = entries["train_step"].precision
    timings = summarize(measure(entries, image_set.images, args.rounds, args.calls))
    result = {
        "machine": describe(),
        "model": "lenet5", "data": "fashion-mnist", "batch_size": BATCH,
        "precision": precision, "rounds": args.rounds, "calls_per_round": args.calls,
        "presets": {name: {k: v for k, v in vars(config).items() if v not in (0, 0.0, "none")}
                    for name, config in PRESETS.items()},
        "timings": timings,
        "default_of_train_step": timings["preset_default"]["of_train_step"],
        "default_within_10_percent": timings["preset_default"]["of_train_step"] <= 0.10,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    record_in_docstring(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
