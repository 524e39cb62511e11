"""Inference backends against eager fp32 on the same model file (issue 14, items 1-2).

Last run (bench/results/inference.json; numbers from that file):
    machine: 2-core AMD EPYC VM, AVX512 (avx2, avx512f, avx512_vnni, avx512_bf16), torch
    2.14.1, onnxruntime 1.32.0; ONE thread on CPU 0 (CPU 1 ran another measurement, and
    other work shared CPU 0 at times: single runs are noisy, ratios within ~20%)
    command: python bench/inference.py --threads 1 --rounds 3   (1 epoch on digits, 1x32x32)
    ms per batch (ratio to eager fp32; < 1 is faster), medians of 3 alternating rounds:
      model     batch  eager    folded      jit         onnx        onnx-int8    auto
      lenet5    1      0.46     0.35 .76    0.26 .58    0.07 .16    0.11 .25     0.08 .17 (onnx)
      lenet5    256    81       87  1.07    81   1.00   29   .36    53   .65     31   .38 (onnx)
      vgg11_bn  1      51.6     38.4 .74    50.1 .97    25.3 .49    10.6 .21     10.5 .20 (int8)
      vgg11_bn  256    2353     2993 1.27   2751 1.17   2930 1.25   856  .36     776  .33 (int8)
      resnet18  1      36.9     35.1 .95    40.2 1.09   24.4 .66    refused      25.0 .68 (onnx)
      resnet18  256    7270     6434 .89    5857 .81    5730 .79    refused      5828 .80 (jit)
      resnet20  1      6.8      6.1  .89    2.0  .30    0.83 .12    refused      0.84 .12 (onnx)
      resnet20  256    500      453  .91    508  1.02   552  1.10   refused      462  .93 (folded)
    int8 check (180 digits test images, --max-accuracy-drop 1): lenet5 and vgg11_bn kept
    (agreement 100%, accuracy unchanged); resnet18 refused (agreement 98.3%, 45.0% -> 43.9%,
    2 images) and resnet20 refused (96.7%, 29.4% -> 28.3%): 1-epoch models near chance.
    Issue 14's acceptance, --backend auto against eager fp32:
      batch 256 throughput >= 3x: vgg11_bn 3.0x (int8) MET, barely; resnet18 1.25x NOT MET.
      batch 1 latency <= 0.5x: vgg11_bn 0.20x MET, resnet18 0.68x NOT MET
      (lenet5 0.17x and resnet20 0.12x met; lenet5 2.6x at 256, resnet20 1.08x).

For each network a model file is trained briefly on digits (1x32x32, so int8's accuracy check
means something); then, in alternating rounds, eager fp32 torch (the Predictor's `torch`
backend) and each other backend run batch 1 and batch 256 on the same pixels. Medians over
rounds; ratios are the backend's time over eager's (below 1: faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import imgcls  # noqa: E402
from imgcls.backends.int8_export import export_int8  # noqa: E402
from imgcls.predict import Predictor  # noqa: E402

from machine import describe  # noqa: E402

MODELS = ("lenet5", "vgg11_bn", "resnet18", "resnet20")
BACKENDS = ("torch-folded", "torch-jit", "onnx", "onnx-int8", "auto")
BATCHES = (1, 256)


def model_file(name: str, runs: Path, epochs: int) -> Path:
    run = runs / f"digits-{name}"
    if not (run / "model.safetensors").is_file():
        imgcls.train(data="digits", model=name, epochs=epochs, batch_size=64, image_size=32,
                     precision="fp32", output=str(run), show_progress=False, overwrite=True)
    return run / "model.safetensors"


def time_once(predictor: Predictor, pixels: torch.Tensor, repeats: int) -> float:
    """Median ms of `repeats` calls of one batch."""
    predictor.probabilities(pixels, len(pixels))  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.probabilities(pixels, len(pixels))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_model(name: str, path: Path, rounds: int) -> dict:
    check, written = export_int8(path, data="digits", data_dir=None, max_accuracy_drop=1.0)
    result: dict = {"int8_check": {**check.__dict__, "passed": check.passed}}
    predictors = {"eager": Predictor(path, device="cpu")}
    for backend in BACKENDS:
        if backend == "onnx-int8" and written is None:
            continue
        predictors[backend] = Predictor(path, device="cpu", backend=backend,
                                        batch_sizes=BATCHES)
    if "auto" in predictors:
        result["auto_choice"] = {str(s): predictors["auto"].backend.choice(s) for s in BATCHES}
    card = predictors["eager"].card
    pixels = torch.randint(0, 256, (max(BATCHES), *card.input.chw), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    for batch in BATCHES:
        repeats = 20 if batch == 1 else 2
        samples: dict[str, list[float]] = {label: [] for label in predictors}
        for _ in range(rounds):  # alternating: each round times every backend once
            for label, predictor in predictors.items():
                samples[label].append(time_once(predictor, pixels[:batch], repeats))
        medians = {label: statistics.median(values) for label, values in samples.items()}
        result[f"batch_{batch}"] = {
            label: {"ms": round(ms, 3), "ratio_to_eager": round(ms / medians["eager"], 3)}
            for label, ms in medians.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", default="/tmp/imgcls-bench-inference")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"machine": describe(), "command": " ".join(sys.argv), "models": {}}
    for name in args.models.split(","):
        path = model_file(name, Path(args.runs), args.epochs)
        results["models"][name] = bench_model(name, path, args.rounds)
        print(name, json.dumps(results["models"][name]), flush=True)
    output = Path(__file__).parent / "results" / "inference.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {output}")


if __name__ == "__main__":
    main()
