"""Serving throughput: the same `imgcls serve` with dynamic batching vs --max-batch 1.

Last run (2026-11-28, bench/results/serve_throughput.json): 2-core AMD EPYC VM, quiet, no
GPU, torch 2.14.1, 2 threads; vgg11_bn 3x32x32, 32 clients, 10 s per setting:
      --max-batch 32: 160.8 images/s, p50 191 ms, p99 406 ms
      --max-batch 1:   45.4 images/s, p50 711 ms, p99 818 ms
      speedup 3.54x (short of the 4x target). Other runs: 3.99x, 3.39x, 2.27x (20 ms wait)
      and resnet18 2.42x with other processes on the box: the clients, HTTP parsing and PNG
      decoding share the same 2 cores, and take much of the CPU that batching frees.

Loopback only. The server is a subprocess (`python -m imgcls.cli_serve serve`), the load a
single asyncio process with 32 concurrent httpx clients posting the same PNG to
/v1/predict; each setting runs at most --seconds and --max-requests after a warm-up. The
model is a randomly initialised network (weights do not change speed) written to a
temporary model file. By default vgg11_bn on 3x32x32: on the 2-core CPU below one forward
pass of 32 images costs 5.5x less per image than 32 passes of one (resnet18: 2.4x, lenet5:
5.5x but there HTTP, not the model, is the cost), which is what batching exploits.

    python bench/serve_throughput.py [--model vgg11_bn] [--image-size 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image

from imgcls.artifact import save_model
from imgcls.models import create_model
from imgcls.serve.live import free_port, wait_ready

RESULTS = Path(__file__).parent / "results" / "serve_throughput.json"
WARM_UP_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vgg11_bn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="per setting")
    parser.add_argument("--max-requests", type=int, default=20000, help="per setting")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model_file = write_random_model(Path(folder), args.model, args.channels,
                                        args.image_size)
        image = png_bytes(args.image_size, args.channels)
        runs = {f"max_batch_{size}": run_setting(model_file, image, size, args)
                for size in (args.max_batch, 1)}
    batched, single = runs[f"max_batch_{args.max_batch}"], runs["max_batch_1"]
    result = {"machine": machine(), "model": f"{args.model} {args.channels}x"
              f"{args.image_size}x{args.image_size}", "clients": args.clients,
              "seconds_per_setting": args.seconds, "max_wait_ms": args.max_wait_ms,
              **runs, "speedup": round(batched["images_per_s"] / single["images_per_s"], 2)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def write_random_model(folder: Path, name: str, channels: int, size: int) -> Path:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size).eval()
    metadata = {"architecture": {"name": name, "kwargs": {
        "num_classes": 10, "in_channels": channels, "image_size": size}},
        "class_names": [f"class{i}" for i in range(10)],
        "input": {"channels": channels, "height": size, "width": size},
        "normalization": {"mode": "meanstd", "mean": [0.5] * channels,
                          "std": [0.25] * channels}}
    path = folder / "model.safetensors"
    save_model(path, model, metadata)
    return path


def png_bytes(size: int, channels: int) -> bytes:
    mode = "L" if channels == 1 else "RGB"
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def run_setting(model_file: Path, image: bytes, max_batch: int,
                args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "imgcls.cli_serve", "serve", str(model_file), "--port",
               str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--max-queue", "4096", "--log-level", "warning"]
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
    summary = {"max_batch": max_batch, "requests": len(latencies), "failures": failures,
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
    latencies: list[float] = []
    failures = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(session: httpx.AsyncClient) -> None:
        nonlocal failures, sent
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            begun = time.perf_counter()
            answer = await session.post("/v1/predict?topk=1", content=image,
                                        headers={"Content-Type": "image/png"})
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - begun)
            else:
                failures += 1

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 limits=limits) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return latencies, time.perf_counter() - started, failures


def machine() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


if __name__ == "__main__":
    main()
