"""Serving throughput: the same `imgcls serve` with dynamic batching vs --max-batch 1.

Last run (2026-11-30, bench/results/serve_throughput.json): 2-core AMD EPYC VM, AVX2 only,
no GPU, torch 2.14.1, 2 threads; vgg11_bn on 1x28x28 (Fashion-MNIST's shape), 32 clients,
--max-wait-ms 20 (the default), 10 s per setting, 3 alternations, medians:
      --max-batch 32: 198.1 images/s (216.0 / 194.8 / 198.1), p50 150 ms, p99 551 ms
      --max-batch 1:   41.2 images/s (43.4 / 39.9 / 41.2),    p50 756 ms, p99 904 ms
      speedup 4.81x (the slowest batched round vs the fastest single one: 4.49x)
    3x32x32 the same day (--channels 3 --image-size 32): 155.6 vs 36.6 images/s, 4.25x,
    p50 192 / 858 ms, p99 598 / 987 ms.
    With --max-wait-ms 5 (the default before): 171.6 vs 44.8 images/s, 3.83x; batches
    closed at ~16 images while the other half of the clients was still being decoded.
    The ceiling is the model's own: on this CPU one forward pass of 32 images is 5.8x
    (1x28) and 3.6x (3x32) cheaper per image than 32 passes of one, before any HTTP; the
    32 clients, HTTP parsing and PNG decoding share the same 2 cores.
    Before this session the load came from httpx (7.8 ms of CPU per request, more than the
    server's own 4.5) and uvicorn parsed with h11 on asyncio: 83 vs 31 images/s (2.64x)
    at 3x32, 5 ms. The 2026-11-28 AVX512 VM gave 3.54x (160.8 vs 45.4) there.

Backends (issue 14), 2026-11-30, 2-core AMD EPYC VM, AVX512 + native bf16, `taskset -c 1`
(server, its 1 thread and the 32 clients on ONE core, the other busy elsewhere); vgg11_bn
trained 8 epochs on digits (1x32x32) by bench/inference.py, whose int8 export passed its
check; --max-batch 32, 10 s per setting, 3 alternations, bench/results/serve_backends.json:
    taskset -c 1 python bench/serve_throughput.py --backends torch,auto --model-file
        /tmp/imgcls-bench-inference8/digits-vgg11_bn/model.safetensors --channels 1 --image-size 32
      --backend torch: 229.1 images/s (229.1 / 233.0 / 228.0), p50 134 ms, p99 317 ms
      --backend auto:  589.3 images/s (584.2 / 589.3 / 610.7), p50  51 ms, p99 232 ms
      gain 2.57x (auto ran onnx-int8 at both batch sizes). With a random, untrained
      vgg11_bn 1x28 (no int8 possible) auto ran an fp32 backend: 295.2 -> 322.9, 1.09x.

Loopback only. The server is a subprocess (`python -m imgcls.cli.serve serve`), the load a
single asyncio process with 32 concurrent aiohttp clients posting the same PNG to
/v1/predict; each setting runs at most --seconds and --max-requests after a warm-up. The
model is a randomly initialised network (weights do not change speed) written to a
temporary model file. vgg11_bn because batching is what it needs: resnet18 gains only
1.5x from batch 32 on this CPU, and lenet5's forward pass is so cheap that HTTP is all
there is to measure.

    python bench/serve_throughput.py [--model vgg11_bn] [--channels 1] [--image-size 28]
        [--seconds 10] [--max-wait-ms 20] [--repeats 3] [--backends torch,auto]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import torch
from PIL import Image

from imgcls.modelfile.artifact import save_model
from imgcls.modelfile.card import Architecture, InputShape, ModelCard
from imgcls.models import create_model
from imgcls.serve.live import free_port, wait_ready
from imgcls.serve.settings import ServeSettings

from machine import describe

RESULTS = Path(__file__).parent / "results" / "serve_throughput.json"
WARM_UP_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vgg11_bn")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="per setting")
    parser.add_argument("--max-requests", type=int, default=20000, help="per setting")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=ServeSettings().max_wait_ms)
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternate the two settings this many times; report medians")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--backends", metavar="A,B",
                        help="instead of batched vs --max-batch 1: batched under backend A vs "
                             "B, e.g. torch,auto (issue 14's serving check)")
    parser.add_argument("--model-file", type=Path,
                        help="with --backends: serve this trained model file instead of a "
                             "random one (int8 needs one whose `imgcls export --quantize "
                             "int8` check passed); --channels/--image-size must match it")
    args = parser.parse_args()
    if args.backends:
        compare_backends(args, *args.backends.split(","))
        return
    with tempfile.TemporaryDirectory() as folder:
        model_file = write_random_model(Path(folder), args.model, args.channels,
                                        args.image_size)
        image = png_bytes(args.image_size, args.channels)
        trials: dict[str, list[dict[str, Any]]] = {f"max_batch_{size}": []
                                                   for size in (args.max_batch, 1)}
        # Alternating spreads the machine's drift over both settings alike.
        for _ in range(args.repeats):
            for size in (args.max_batch, 1):
                trials[f"max_batch_{size}"].append(run_setting(model_file, image, size, args))
        runs = {name: median_trial(results) for name, results in trials.items()}
    batched, single = runs[f"max_batch_{args.max_batch}"], runs["max_batch_1"]
    result = {"machine": describe(), "model": f"{args.model} {args.channels}x"
              f"{args.image_size}x{args.image_size}", "clients": args.clients,
              "seconds_per_setting": args.seconds, "max_wait_ms": args.max_wait_ms,
              "repeats": args.repeats,
              **runs, "speedup": round(batched["images_per_s"] / single["images_per_s"], 2)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def compare_backends(args: argparse.Namespace, first: str, second: str) -> None:
    """The same batched server under two --backend values, alternating, medians."""
    with tempfile.TemporaryDirectory() as folder:
        model_file = args.model_file or write_random_model(Path(folder), args.model,
                                                           args.channels, args.image_size)
        image = png_bytes(args.image_size, args.channels)
        trials: dict[str, list[dict[str, Any]]] = {first: [], second: []}
        for _ in range(args.repeats):
            for backend in (first, second):
                trials[backend].append(run_setting(model_file, image, args.max_batch, args,
                                                   backend))
    runs = {backend: median_trial(results) for backend, results in trials.items()}
    model = str(args.model_file) if args.model_file else args.model
    result = {"machine": describe(), "model": f"{model} {args.channels}x"
              f"{args.image_size}x{args.image_size}", "clients": args.clients,
              "max_batch": args.max_batch, "seconds_per_setting": args.seconds,
              "repeats": args.repeats, **runs,
              "gain": round(runs[second]["images_per_s"] / runs[first]["images_per_s"], 2)}
    output = args.output.with_name("serve_backends.json")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def median_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(trials, key=lambda trial: trial["images_per_s"])
    return {**ranked[len(ranked) // 2],
            "all_images_per_s": [trial["images_per_s"] for trial in trials]}


def write_random_model(folder: Path, name: str, channels: int, size: int) -> Path:
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_channels": channels, "image_size": size}
    model = create_model(name, **kwargs).eval()
    card = ModelCard(
        architecture=Architecture(name, kwargs), class_names=[f"class{i}" for i in range(10)],
        input=InputShape(channels, size, size),
        normalization={"mode": "meanstd", "mean": [0.5] * channels, "std": [0.25] * channels})
    path = folder / "model.safetensors"
    save_model(path, model, card)
    return path


def png_bytes(size: int, channels: int) -> bytes:
    mode = "L" if channels == 1 else "RGB"
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def run_setting(model_file: Path, image: bytes, max_batch: int,
                args: argparse.Namespace, backend: str = "torch") -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "imgcls.cli.serve", "serve", str(model_file), "--port",
               str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--max-queue", "4096", "--log-level", "warning", "--backend", backend]
    server = subprocess.Popen(command, env={**os.environ, "IMGCLS_API_KEY": ""})
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        asyncio.run(load(port, image, args.clients, WARM_UP_S, args.max_requests))
        latencies, seconds, failures = asyncio.run(
            load(port, image, args.clients, args.seconds, args.max_requests))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    milliseconds = np.array(latencies) * 1000
    summary = {"max_batch": max_batch, "backend": backend, "requests": len(latencies),
               "failures": failures,
               "seconds": round(seconds, 2),
               "images_per_s": round(len(latencies) / seconds, 1),
               "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
               "p99_ms": round(float(np.percentile(milliseconds, 99)), 2)}
    print(summary, file=sys.stderr)
    return summary


async def load(port: int, image: bytes, clients: int, seconds: float,
               max_requests: int) -> tuple[list[float], float, int]:
    """`clients` loops posting `image` until `seconds` pass or `max_requests` are sent:
    latencies of the successful requests, the wall time, and the failed count."""
    # aiohttp, not httpx: the load shares the server's 2 cores, and httpx spent 7.8 ms of
    # CPU per request here (more than the server itself) against aiohttp's 0.3-0.4 ms.
    latencies: list[float] = []
    failures = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    url = f"http://127.0.0.1:{port}/v1/predict?topk=1"
    headers = {"Content-Type": "image/png"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures, sent
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            begun = time.perf_counter()
            async with session.post(url, data=image, headers=headers) as answer:
                await answer.read()
                if answer.status == 200:
                    latencies.append(time.perf_counter() - begun)
                else:
                    failures += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return latencies, time.perf_counter() - started, failures


if __name__ == "__main__":
    main()
