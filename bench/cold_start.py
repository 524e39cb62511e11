"""Cold-process start of imgcls: `--help`, predicting one image, an idle service.

Last run (2026-11-30): python bench/cold_start.py --model /tmp/cs2/run/model.safetensors --onnx
/tmp/cs2/model.onnx --image /tmp/cs2/d0.png --runs 3, under `taskset -c 1` with
OMP_NUM_THREADS=1 (a lenet5 trained 2 epochs on digits, 1x32x32, whose training cached its
ONNX export; the same model exported to .onnx; one 32x32 PNG). Machine: 2-core AMD EPYC VM,
AVX512 + native bf16, torch 2.14.1 (the CUDA 13 build: `import torch` alone peaks at ~730 MB
RSS), onnxruntime 1.32.0, Python 3.11.7; CPU 1 to itself (the other core ran other work);
warm file cache; medians of 3.

                                              wall     CPU      peak RSS   target
    imgcls --help                             0.10 s   0.09 s    20 MB     < 0.3 s (was 6.1 s)
    imgcls predict model.safetensors          0.23 s   0.22 s    73 MB     < 2 s, < 400 MB
      (default --backend auto: the export training cached, no torch)
    imgcls predict model.safetensors --backend torch
                                              1.98 s   1.97 s   736 MB     (was 6.2-7.5 s, 1.07 GB)
    imgcls predict model.onnx                 0.23 s   0.22 s    73 MB     < 2 s, < 400 MB
    imgcls serve model.onnx, idle (ready in 0.57 s)               109 MB     < 300 MB
    imgcls serve model.safetensors --backend onnx, idle (0.57 s)  109 MB     < 300 MB
    imgcls serve model.safetensors, idle (torch; ready in 2.0 s)  641 MB     (was 0.95 GB)

Writes bench/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "cold_start.json"
IMGCLS = str(Path(sys.executable).with_name("imgcls"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def timed(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one cold process, from GNU time. CPU
    time (user + system) is the steadier number where other work shares the core."""
    result = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *command], env=ENV,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed: {result.stderr[-500:]}")
    wall, user, system, kilobytes = result.stderr.strip().splitlines()[-1].split()
    return float(wall), round(float(user) + float(system), 2), int(kilobytes) // 1024


def median_of(command: list[str], runs: int) -> dict[str, float]:
    samples = [timed(command) for _ in range(runs)]
    return {"wall_s": statistics.median(wall for wall, _, _ in samples),
            "cpu_s": statistics.median(cpu for _, cpu, _ in samples),
            "peak_rss_mb": statistics.median(rss for _, _, rss in samples), "runs": runs}


def idle_service_rss(model: str, *flags: str) -> dict[str, float]:
    """RSS of `imgcls serve MODEL` once /readyz answers (warmed up) and 2 s idle after."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([IMGCLS, "serve", model, "--port", str(port), "--threads", "1",
                               "--log-level", "warning", *flags], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready_s = wait_ready(port, started)
        time.sleep(2)
        return {"ready_s": round(ready_s, 2), "idle_rss_mb": rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_ready(port: int, started: float) -> float:
    while time.perf_counter() - started < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the service did not become ready within 120 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model.safetensors whose training "
                        "cached its ONNX export (what `imgcls train` does with [serve])")
    parser.add_argument("--onnx", required=True, help="the same model exported to .onnx")
    parser.add_argument("--image", required=True, help="one image file")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cpus_allowed": sorted(os.sched_getaffinity(0)),
                    "omp_num_threads": 1, "python": platform.python_version(),
                    "load_average_1min": os.getloadavg()[0]},
        "help": median_of([IMGCLS, "--help"], args.runs),
        "predict_default": median_of([IMGCLS, "predict", args.model, args.image], args.runs),
        "predict_torch": median_of([IMGCLS, "predict", args.model, args.image, "--backend",
                                    "torch"], args.runs),
        "predict_onnx": median_of([IMGCLS, "predict", args.onnx, args.image], args.runs),
        "serve_onnx": idle_service_rss(args.onnx),
        "serve_safetensors_onnx_backend": idle_service_rss(args.model, "--backend", "onnx"),
        "serve_torch": idle_service_rss(args.model),
        "command": " ".join(["python", "bench/cold_start.py", *sys.argv[1:]]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
