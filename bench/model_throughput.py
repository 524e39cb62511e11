"""Training throughput of the compact networks: DenseNet-BC before and after, GFLOP/s vs peak.

Last run (2026-11-30, bench/results/model_throughput.json; filled in from that file):
    machine: 2-core AMD EPYC VM, AVX512 with native bf16, torch 2.14.1, ONE thread, timed on
    the process's CPU clock (the other core was busy with other measurements)
    command: python bench/model_throughput.py --threads 1 --clock cpu --seconds 2
    matmul peak (2048^2, 1 thread): fp32 92.8 GFLOP/s, bf16 210.2 GFLOP/s
    DenseNet-BC-100, 1x28x28, batch 128, training images/s, medians of 3 alternations:
      bf16 + channels_last (what the registry runs): old 35.7, new 52.9: 1.48x
      fp32 + channels_last:                          old 21.8, new 20.7: 0.95x
      Issue 11 asks for >= 3x: NOT met.
    compact networks, training images/s and GFLOP/s (3x forward FLOPs), share of the bf16 peak:
      lenet5 (fp32)   8,689   21.7   0.10 of the fp32 peak
      vgg_small       1,650  157.3   0.75
      alexnet_small   1,079  177.1   0.84
      resnet20          639  118.1   0.56      resnet32 410 129.1 0.61   resnet56 226 130.1 0.62
      densenet_bc_40    231   76.2   0.36      densenet_bc_100 54.1 71.4 0.34
    (densenet_bc_40 ran channels_last then; its ModelSpec now picks contiguous.)
  Checks in quieter minutes, wall clock, not in the JSON: 2 threads, bf16 + channels_last,
  3 rounds 57.6 / 61.0 / 65.0 -> 91.2 / 93.2 / 91.3 (1.50x); 1 thread, fp32 + channels_last,
  24.5 / 25.1 / 23.0 -> 28.3 / 25.9 / 28.3 (1.16x). torchvision's forward ran faster in
  contiguous format than in channels_last (bf16: 81 images/s at 2 threads in one round, 46
  at 1 thread), so against its best format the bf16 gain is about 1.15x.

Why not 3x. Profiles (torch.profiler, bf16, batch 128): torchvision's forward spent its step
on autograd adding each layer's gradient into every earlier map slice by slice (24% at 1
thread, batch 32: 12-value strided runs in channels_last), BatchNorm over the concatenation in
every layer, torch.cat and ReLU; convolutions 37%. After (2 threads): 1x1 convolutions as
matrix products 35%, 3x3 convolutions 17%, scale-shift, ReLU and their backward over the
concatenated maps about 29%, the bottleneck's BatchNorm and ReLU about 10%. Those passes are
the architecture (each layer scales and shifts every earlier map with its own BatchNorm
weights, then applies ReLU): each a memory-bound pass over O(L^2) data in eager PyTorch.
Fusing them (torch.compile, the trainer's --compile) or custom kernels is what remains; the
convolutions themselves run at a third of the matmul peak with 12-48 channels.
Also seen once (2 threads, an earlier version of the new forward): glibc's malloc maps
tensors over 32 MB fresh from the kernel on every step. With MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=68719476736, fp32 went 41.7 -> 59.6 images/s for torchvision's
forward and 42.7 -> 56.0 for the new one, bf16 64.0 -> 70.5 and 88.7 -> 92.2: worth a look
in the trainer (resident memory then stays at its peak).

Two measurements, in one run:
  1. DenseNet-BC-100 (k=12), 1x28x28, batch 128, training step (train mode, cross-entropy,
     SGD with momentum): torchvision's DenseNet class and forward as imgcls built it before
     (memory-efficient off) vs today's densenet_bc_100 (the same modules and weights, the
     training forward of src/imgcls/models/dense_train.py). Both in the precision and memory
     format the registry picks for DenseNet-BC (bf16 autocast where the CPU has native bf16,
     channels_last), and both in fp32 channels_last (what issue 11 measured, ~20 images/s on
     a 2-core AVX2 CPU). Old and new alternate, `--rounds` times; medians.
  2. Every compact network (ModelSpec.compact, plus lenet5 and vgg_small for scale), its
     training step as the registry runs it: images/s and achieved GFLOP/s (3x the forward
     FLOPs per image, imgcls.models.mflops, times images/s) against the machine's matmul
     peak (torch.mm of 2048x2048 matrices, fp32 and bf16, best of 5) at the same threads.

    python bench/model_throughput.py [--threads N] [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from imgcls.models import create_model, get_spec, list_models, mflops
from imgcls.models.speed import RandomBatch, Timing
from imgcls.runtime import Requested, pick_precision, precision_name, resolve

from machine import describe

RESULTS = Path(__file__).parent / "results" / "model_throughput.json"
IMAGE_SIZE, CHANNELS, CLASSES, BATCH = 28, 1, 10, 128
# For scale beside the compact variants: the fastest network and the --model auto one.
REFERENCE_MODELS = ("lenet5", "vgg_small")


def old_densenet_bc_100() -> nn.Module:
    """DenseNet-BC-100 as imgcls built it before: torchvision's class and forward, with the
    small-image stem (3x3 stride-1 conv0, no pool0), memory-efficient off."""
    model = torchvision.models.DenseNet(
        growth_rate=12, block_config=(16, 16, 16), num_init_features=24, num_classes=CLASSES)
    model.features.conv0 = nn.Conv2d(CHANNELS, 24, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.features.conv0.weight)
    model.features.pool0 = nn.Identity()
    return model


def new_densenet_bc_100() -> nn.Module:
    return create_model("densenet_bc_100", num_classes=CLASSES, in_channels=CHANNELS,
                        image_size=IMAGE_SIZE)


def train_rate(model: nn.Module, dtype: torch.dtype | None, channels_last: bool,
               timing: Timing) -> float:
    batch = RandomBatch.make(BATCH, CHANNELS, IMAGE_SIZE, CLASSES, torch.device("cpu"),
                             channels_last)
    return timing.training(batch.place(model), batch, dtype)


def densenet_before_after(rounds: int, timing: Timing) -> dict:
    auto = pick_precision("auto", torch.device("cpu"),
                          cpu_bf16_pays=get_spec("densenet_bc_100").cpu_bf16)
    settings = {precision_name(auto): auto, "fp32": None}  # one entry where auto is fp32
    results: dict = {}
    for name, dtype in settings.items():
        old, new = [], []
        for _ in range(rounds):  # alternating spreads the machine's drift over both alike
            old.append(train_rate(old_densenet_bc_100(), dtype, True, timing))
            new.append(train_rate(new_densenet_bc_100(), dtype, True, timing))
            print(f"densenet_bc_100 {name} channels_last: old {old[-1]:.1f}, new {new[-1]:.1f}"
                  " images/s", flush=True)
        results[f"{name}, channels_last"] = {
            "old_images_per_s": old, "new_images_per_s": new,
            "old_median": statistics.median(old), "new_median": statistics.median(new),
            "ratio": statistics.median(new) / statistics.median(old),
        }
    return results


def matmul_peak_gflops(dtype: torch.dtype, clock: Callable[[], float], size: int = 2048,
                       repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        torch.mm(a, b)
        best = min(best, clock() - started)
    return 2 * size**3 / best / 1e9


def compact_models() -> list[str]:
    names = [n for n in list_models() if get_spec(n).compact and n != "densenet_bc"]  # an alias
    return [n for n in REFERENCE_MODELS if n in list_models()] + names


def achieved_gflops(timing: Timing, peaks: dict[str, float]) -> list[dict]:
    rows = []
    for name in compact_models():
        model = create_model(name, num_classes=CLASSES, in_channels=CHANNELS,
                             image_size=IMAGE_SIZE)
        forward_mflops = mflops(model, CHANNELS, IMAGE_SIZE)
        runtime = resolve(Requested(), get_spec(name), device=torch.device("cpu"))
        rate = train_rate(model, runtime.dtype, runtime.channels_last, timing)
        gflops = 3 * forward_mflops * rate / 1e3
        precision = runtime.precision
        rows.append({
            "model": name, "precision": precision, "channels_last": runtime.channels_last,
            "forward_mflops": forward_mflops, "train_images_per_s": rate,
            "train_gflops": gflops, "share_of_matmul_peak": gflops / peaks[precision],
        })
        print(f"{name:16s} {precision} {rate:8.0f} images/s {gflops:6.1f} GFLOP/s "
              f"({100 * gflops / peaks[precision]:.0f}% of {precision} matmul peak)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, one per core)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="timed seconds per measure (at least 2 steps)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, meaningful with --threads 1 on a "
                             "machine others are using too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    timing = Timing(seconds=args.seconds, warmup_steps=1, clock=clock)
    peaks = {"fp32": matmul_peak_gflops(torch.float32, clock),
             "bf16": matmul_peak_gflops(torch.bfloat16, clock)}
    print(f"matmul peak: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)
    result = {
        "machine": describe(),
        "input": f"{CHANNELS}x{IMAGE_SIZE}x{IMAGE_SIZE}", "batch_size": BATCH,
        "clock": args.clock, "command": " ".join(sys.argv),
        "matmul_peak_gflops": peaks,
        "densenet_bc_100": densenet_before_after(args.rounds, timing),
        "compact": achieved_gflops(timing, peaks),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for setting, numbers in result["densenet_bc_100"].items():
        print(f"densenet_bc_100 ({setting}): {numbers['old_median']:.1f} -> "
              f"{numbers['new_median']:.1f} images/s, {numbers['ratio']:.2f}x")


if __name__ == "__main__":
    main()
