"""int8 quantization schemes on a VNNI CPU and on an AVX2-only one (issue 24).

Last run (2026-12-04): 2-core AMD EPYC VM, AVX512 with VNNI and native bf16 (cpu kind
"x86_64 avx2 avx512bw avx512_vnni avx512_bf16"), torch 2.14.1, onnxruntime 1.32.0, Python
3.11.7, one thread; bench/results/int8_schemes.json (agreement) and int8_schemes-speed.json
(speed, `--no-emulation`, the machine otherwise idle). 180 digits test images, 1x32x32:

                                     top-1 agreement with fp32      batch 256, x eager fp32
  model     scheme                   this CPU   AVX2 (emulated)     (this CPU)
  lenet5    8-bit weights (before)   100%       92.22% (88.89% acc) 0.790 (12.8 ms)
  (3 ep.)   7-bit weights (now)      100%       100%   (95.56% acc) 0.787 (12.8 ms)
            uint8 weights            100%       100%                0.898 (14.6 ms)
  resnet18  8-bit weights (before)   100%       99.44% (99.44% acc) 0.256 (739 ms)
  (8 ep.)   7-bit weights (now)      100%       100%   (100% acc)   0.250 (721 ms)
            uint8 weights            100%       100%                0.621 (1792 ms)

The AVX2 column reproduces the failure issue 24 reported from a real AVX2-only EPYC exactly
(LeNet-5: 166/180, 95.56% -> 88.89%). 7-bit weights cannot saturate a 16-bit pair
(2 * 255 * 64 < 32,768) and fix it at no cost in agreement or speed (resnet18 at batch 256:
721 ms against 739, eager fp32 2,886; 5 alternating rounds); uint8 weights fix it too but run
2.5x slower than int8 weights here (VNNI has no uint8 x uint8 product). Speed on the AVX2
kind could not be measured here (qemu's emulation is 20-50x slower than the real CPU).

What it does. For each model (trained on digits as bench/inference.py trains them, 1x32x32):
the cached fp32 ONNX export is quantized with each scheme; each int8 file is compared with
eager fp32 on the digits test split (top-1 agreement, accuracy) on this CPU and, where
`qemu-x86_64` is installed (Debian's qemu-user), under `qemu-x86_64 -cpu EPYC-Rome`: the same
binaries on an emulated AVX2-only EPYC, so onnxruntime's CPUID check picks its AVX2 kernels
(the saturating `vpmaddubsw` path) as on the real AVX2 kind. Emulated speed means nothing, so
speed (batch 256, ms) is timed on this CPU only, alternating eager fp32 and each scheme.

    python bench/int8_schemes.py --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEMES = {  # name -> quantize_static keywords (all QDQ, per channel, MinMax, uint8 activations)
    "u8s8 (8-bit weights: before)": {"weight_type": "QInt8"},
    "u8s8 reduce_range (7-bit weights: now)": {"weight_type": "QInt8", "reduce_range": True},
    "u8u8": {"weight_type": "QUInt8"},
}
MODELS = {"lenet5": 3, "resnet18": 8}  # network -> epochs on digits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", default="/tmp/imgcls-bench-int8")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-emulation", action="store_true",
                        help="skip the checks under qemu (minutes for resnet18)")
    parser.add_argument("--worker", nargs=2, metavar=("NPZ", "JSON"),
                        help=argparse.SUPPRESS)  # the torch-free check run under qemu
    args = parser.parse_args()
    if args.worker:
        return check_worker(Path(args.worker[0]), Path(args.worker[1]))
    import logging

    import torch

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's advice on every quantization
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe

    results = {"machine": describe(), "command": " ".join(sys.argv), "models": {}}
    for name in args.models.split(","):
        results["models"][name] = bench_model(name, Path(args.runs), args)
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    # A speed-only run keeps the emulated agreement of the last full run beside it.
    name = "int8_schemes-speed.json" if args.no_emulation else "int8_schemes.json"
    output = Path(__file__).parent / "results" / name
    output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"written to {output}")


def bench_model(name: str, runs: Path, args: argparse.Namespace) -> dict:
    import torch

    import imgcls
    from imgcls.evaluation.evaluate import evaluate_predictions, split_indices
    from imgcls.evaluation.int8_export import CALIBRATION_IMAGES, spread
    from imgcls.export.cache import cache_for
    from imgcls.predict.backends.choose import fp32_onnx

    run = runs / f"digits-{name}"
    if not (run / "model.safetensors").is_file():
        imgcls.train(data="digits", model=name, epochs=MODELS.get(name, 8), batch_size=64,
                     image_size=32, precision="fp32", output=str(run), show_progress=False,
                     overwrite=True)
    model = run / "model.safetensors"
    fp32 = evaluate_predictions(model, "digits", split="test")
    train = split_indices(model, fp32.predictor.card, fp32.image_set, "train", trained_on=True)
    calibration = fp32.image_set.images[torch.as_tensor(spread(train, CALIBRATION_IMAGES))]
    test = fp32.image_set.images[torch.as_tensor(fp32.indices)].numpy()
    folder = Path(tempfile.mkdtemp(prefix=f"int8-{name}-"))
    source = fp32_onnx(cache_for(model), model)
    files = {scheme: quantize(source, folder / f"{index}.onnx", calibration, keywords)
             for index, (scheme, keywords) in enumerate(SCHEMES.items())}
    np.savez(folder / "check.npz", images=test, labels=fp32.labels, fp32=fp32.probabilities,
             files=json.dumps({scheme: str(path) for scheme, path in files.items()}))
    result = {"test_images": len(test), "fp32_accuracy": accuracy(fp32.probabilities,
                                                                   fp32.labels),
              "this_cpu": run_checks(folder, emulate=False),
              "avx2_emulated": ("not run: --no-emulation" if args.no_emulation
                                else run_checks(folder, emulate=True)),
              "batch_256_ms": time_schemes(fp32.predictor, files, test, args)}
    shutil.rmtree(folder)
    return result


def quantize(source: Path, target: Path, calibration, keywords: dict) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from imgcls.export.writers import INPUT_NAME

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(32))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch.float().numpy()}

    options = {**keywords, "weight_type": getattr(QuantType, keywords["weight_type"])}
    quantize_static(str(source), str(target), Batches(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                    calibrate_method=CalibrationMethod.MinMax, **options)
    return target


def run_checks(folder: Path, *, emulate: bool) -> dict | str:
    """Agreement and accuracy of each scheme, from a torch-free process (under qemu: AVX2)."""
    output = folder / ("avx2.json" if emulate else "native.json")
    command = [sys.executable, __file__, "--worker", str(folder / "check.npz"), str(output)]
    if emulate:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            return "not run: no qemu-x86_64 (apt-get install qemu-user)"
        command = [qemu, "-cpu", "EPYC-Rome", os.path.realpath(sys.executable), *command[1:]]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(command, check=True, env=environment, stderr=subprocess.DEVNULL)
    return json.loads(output.read_text())


def check_worker(npz: Path, output: Path) -> None:
    import onnxruntime

    from imgcls.utils.cpus import cpu_kind

    stored = np.load(npz)
    fp32 = stored["fp32"].argmax(1)
    result: dict = {"cpu_kind": cpu_kind()}
    for scheme, path in json.loads(str(stored["files"])).items():
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        int8 = session.run(None, {session.get_inputs()[0].name:
                                  stored["images"].astype(np.float32)})[0].argmax(1)
        result[scheme] = {"top1_agreement": float(np.mean(int8 == fp32)),
                          "int8_accuracy": float(np.mean(int8 == stored["labels"]))}
    output.write_text(json.dumps(result))


def time_schemes(predictor, files: dict[str, Path], test: np.ndarray,
                 args: argparse.Namespace) -> dict:
    """Median ms of a 256-image batch: eager fp32 (the Predictor) and each int8 file."""
    import torch

    from imgcls.export.session import OnnxRunner

    pixels = torch.from_numpy(np.resize(test, (256, *test.shape[1:])))
    runners = {"eager fp32": lambda: predictor.probabilities(pixels, 256)}
    for scheme, path in files.items():
        runner = OnnxRunner(path, threads=args.threads)
        runners[scheme] = lambda runner=runner: runner.probabilities(pixels.numpy(), 256)
    samples: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.rounds):  # alternating: each round times every runner once
        for label, run in runners.items():
            run()  # warm
            started = time.perf_counter()
            for _ in range(3):
                run()
            samples[label].append((time.perf_counter() - started) / 3 * 1000)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    return {label: {"ms": round(ms, 2), "ratio_to_eager": round(ms / medians["eager fp32"], 3)}
            for label, ms in medians.items()}


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(1) == labels))


def print_table(results: dict) -> None:
    print(f"{'model':9} {'scheme':40} {'agree here':>10} {'agree avx2':>10} "
          f"{'acc avx2':>8} {'ms b256':>8} {'x eager':>7}")
    for name, result in results["models"].items():
        emulated = result["avx2_emulated"]
        for scheme in SCHEMES:
            here = result["this_cpu"][scheme]
            avx2 = emulated.get(scheme, {}) if isinstance(emulated, dict) else {}
            speed = result["batch_256_ms"][scheme]
            print(f"{name:9} {scheme:40} {here['top1_agreement']:10.2%} "
                  f"{avx2.get('top1_agreement', float('nan')):10.2%} "
                  f"{avx2.get('int8_accuracy', float('nan')):8.2%} {speed['ms']:8.1f} "
                  f"{speed['ratio_to_eager']:7.3f}")
        print(f"{name:9} fp32 accuracy {result['fp32_accuracy']:.2%}, eager fp32 "
              f"{result['batch_256_ms']['eager fp32']['ms']:.1f} ms per 256")


if __name__ == "__main__":
    main()
