"""Soak: `imgcls serve` under a minute of mixed good and bad requests from 64 clients.

Last run (2026-11-30, bench/results/serve_soak.json): 2-core AMD EPYC VM (AVX512), no GPU,
torch 2.14.1, Python 3.11.7; this session's affinity mask held CPU 0 only (CPU 1 ran another
measurement), so the 64 clients and the server (1 torch thread) shared one core, with other
tests of the project possibly running beside them. 60.2 s after a 10 s warm-up:
    11485 requests (191/s), 0 unexpected statuses, 0 transport errors;
      200: 4038 good png, 1313 multipart x2, 1421 v2 base64; 400: 669 corrupt, 670 empty,
      670 malformed v2 JSON; 415: 648 wrong type; 413: 700 oversized; 401: 717 no key;
      639 clients left after 5 ms (the server counted 743 of its 499s, warm-up included)
    server RSS 846.5 MiB after the warm-up, 848.6 MiB at the end: +0.24%
    afterwards /readyz 200, queue depth 0, 0 failed batches, nothing logged at ERROR

Each client loops over a seeded random mix of request kinds, each with the statuses it may
get: good images (raw PNG, two-file multipart, KServe v2 base64), corrupt images, a wrong
Content-Type, empty bodies, malformed v2 JSON, bodies over --max-upload-mb, no API key, and
clients that leave 5 ms into a request. Fails (exit 1) on any status outside its kind's set,
on a transport error, on an ERROR or a traceback in the server's log, or on the server's
RSS growing more than 10% between the end of the warm-up and the end. Loopback only; the
server is a subprocess (`python -m imgcls.cli.serve serve`, with an API key), the load one
asyncio process with aiohttp; the model a randomly initialised lenet5 (the point is the
service, not the model).

    python bench/serve_soak.py [--seconds 60] [--warm-up-s 10] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serve_throughput import write_random_model

from imgcls.serve.live import free_port, wait_ready

from machine import describe

RESULTS = Path(__file__).parent / "results" / "serve_soak.json"
KEY = "soak-key"
MODEL_NAME = "soak"
MAX_UPLOAD_MB = 1
MAX_RSS_GROWTH = 0.10
LEAVE_AFTER_S = 0.005
ABORTED = "aborted"  # the client left before an answer came


@dataclass(frozen=True)
class Kind:
    name: str
    weight: int  # relative frequency in the mix
    expected: frozenset[int | str]
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    form: tuple[tuple[str, bytes], ...] = ()  # multipart files (name, bytes)
    leave_after_s: float | None = None


def png(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).save(buffer, "PNG")
    return buffer.getvalue()


def request_kinds() -> list[Kind]:
    image, auth = png(), {"Authorization": f"Bearer {KEY}"}
    as_png = {**auth, "Content-Type": "image/png"}
    as_json = {**auth, "Content-Type": "application/json"}
    infer = f"/v2/models/{MODEL_NAME}/infer"
    v2_good = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                      "data": [base64.b64encode(image).decode()]}]}).encode()
    ok = frozenset({200})
    return [
        Kind("good png", 6, ok, "POST", "/v1/predict", image, as_png),
        Kind("good multipart x2", 2, ok, "POST", "/v1/predict", headers=auth,
             form=(("a.png", image), ("b.png", png(48)))),
        Kind("good v2 base64", 2, ok, "POST", infer, v2_good, as_json),
        Kind("corrupt png", 1, frozenset({400}), "POST", "/v1/predict",
             image[: len(image) // 2], as_png),
        Kind("wrong content type", 1, frozenset({415}), "POST", "/v1/predict", image,
             {**auth, "Content-Type": "text/plain"}),
        Kind("empty body", 1, frozenset({400}), "POST", "/v1/predict", b"", as_png),
        Kind("malformed v2 json", 1, frozenset({400}), "POST", infer, b'{"inputs": [', as_json),
        Kind("oversized", 1, frozenset({413}), "POST", "/v1/predict",
             os.urandom(MAX_UPLOAD_MB * 2**20 + 2**19), as_png),
        Kind("no api key", 1, frozenset({401}), "POST", "/v1/predict", image,
             {"Content-Type": "image/png"}),
        Kind("client leaves", 1, frozenset({200, ABORTED}), "POST", "/v1/predict", image,
             as_png, leave_after_s=LEAVE_AFTER_S),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured soak")
    parser.add_argument("--warm-up-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    kinds = request_kinds()
    with tempfile.TemporaryDirectory() as folder:
        model = write_random_model(Path(folder), "lenet5", 1, 32)
        log = Path(folder) / "server.log"
        port = free_port()
        server = start_server(model, port, log)
        try:
            wait_ready(f"http://127.0.0.1:{port}")
            asyncio.run(soak(port, kinds, args.clients, args.warm_up_s, seed=1))
            rss_warm = rss_mib(server.pid)
            started = time.perf_counter()
            outcomes = asyncio.run(soak(port, kinds, args.clients, args.seconds, seed=2))
            seconds = time.perf_counter() - started
            rss_end = rss_mib(server.pid)
            after = after_soak(port)
        finally:
            server.send_signal(signal.SIGTERM)
            exit_status = server.wait(timeout=60)
        log_problems = [line for line in log.read_text().splitlines()
                        if "Traceback" in line or "ERROR" in line or "CRITICAL" in line]
    result = summarize(kinds, outcomes, seconds, rss_warm, rss_end, after, log_problems, args)
    result["server_exit_status"] = exit_status
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    failures = check(result)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "imgcls.cli.serve", "serve", str(model), "--port",
               str(port), "--model-name", MODEL_NAME, "--max-upload-mb", str(MAX_UPLOAD_MB),
               "--log-level", "warning"]
    environment = {**os.environ, "IMGCLS_API_KEY": KEY}
    with log.open("wb") as output:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=environment, stdout=output,
                                stderr=subprocess.STDOUT)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def soak(port: int, kinds: list[Kind], clients: int, seconds: float,
               seed: int) -> dict[str, Counter[str]]:
    """`clients` loops sending random kinds until `seconds` pass: outcomes per kind."""
    outcomes: dict[str, Counter[str]] = {kind.name: Counter() for kind in kinds}
    deadline = time.perf_counter() + seconds
    base_url = f"http://127.0.0.1:{port}"

    async def client(session: aiohttp.ClientSession, rng: random.Random) -> None:
        while time.perf_counter() < deadline:
            kind = rng.choices(kinds, weights=[k.weight for k in kinds])[0]
            outcomes[kind.name][await send(session, base_url, kind)] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(session, random.Random(seed * 1000 + index))
                               for index in range(clients)))
    return outcomes


async def send(session: aiohttp.ClientSession, base_url: str, kind: Kind) -> str:
    """The status as text, ABORTED, or the transport error's class name."""
    try:
        if kind.leave_after_s is None:
            return await request(session, base_url, kind)
        return await asyncio.wait_for(request(session, base_url, kind), kind.leave_after_s)
    except asyncio.TimeoutError:  # the builtin only from Python 3.11
        return ABORTED
    except aiohttp.ClientError as error:
        return type(error).__name__


async def request(session: aiohttp.ClientSession, base_url: str, kind: Kind) -> str:
    data: Any = kind.body
    if kind.form:
        data = aiohttp.FormData()
        for name, content in kind.form:
            data.add_field("file", content, filename=name, content_type="image/png")
    async with session.request(kind.method, base_url + kind.path, data=data,
                               headers=kind.headers) as answer:
        await answer.read()
        return str(answer.status)


def after_soak(port: int) -> dict[str, Any]:
    """The server's own view once the load has stopped."""
    base_url = f"http://127.0.0.1:{port}"
    metrics = httpx.get(base_url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    samples = [sample for family in text_string_to_metric_families(metrics.text)
               for sample in family.samples]
    values = {sample.name: sample.value for sample in samples if not sample.labels}
    left = sum(sample.value for sample in samples if sample.name == "imgcls_requests_total"
               and sample.labels.get("status") == "499")
    return {"readyz": httpx.get(base_url + "/readyz").status_code,
            "client_closed_499": left,  # warm-up included: the server saw the clients leave
            "queue_depth": values.get("imgcls_queue_depth"),
            "images_total": values.get("imgcls_images_total"),
            "batch_failures_total": values.get("imgcls_batch_failures_total")}


def summarize(kinds: list[Kind], outcomes: dict[str, Counter[str]], seconds: float,
              rss_warm: float, rss_end: float, after: dict[str, Any],
              log_problems: list[str], args: argparse.Namespace) -> dict[str, Any]:
    per_kind = {}
    for kind in kinds:
        counts = outcomes[kind.name]
        expected = {str(code) for code in kind.expected}
        per_kind[kind.name] = {
            "expected": sorted(expected), "sent": sum(counts.values()), "outcomes": dict(counts),
            "unexpected": sum(n for outcome, n in counts.items() if outcome not in expected)}
    requests = sum(entry["sent"] for entry in per_kind.values())
    return {"machine": describe(), "clients": args.clients, "seconds": round(seconds, 1),
            "warm_up_s": args.warm_up_s, "requests": requests,
            "requests_per_s": round(requests / seconds, 1),
            "unexpected": sum(entry["unexpected"] for entry in per_kind.values()),
            "rss_mib_after_warm_up": round(rss_warm, 1), "rss_mib_end": round(rss_end, 1),
            "rss_growth_pct": round((rss_end / rss_warm - 1) * 100, 2),
            "server_after": after, "server_log_problems": log_problems, "kinds": per_kind}


def print_table(result: dict[str, Any]) -> None:
    print(f"{'kind':<20} {'expected':<14} {'sent':>7} {'unexpected':>10}  outcomes")
    for name, entry in result["kinds"].items():
        outcomes = ", ".join(f"{code}: {n}" for code, n in sorted(entry["outcomes"].items()))
        print(f"{name:<20} {'/'.join(entry['expected']):<14} {entry['sent']:>7} "
              f"{entry['unexpected']:>10}  {outcomes}")
    print(f"{result['requests']} requests in {result['seconds']} s "
          f"({result['requests_per_s']}/s), {result['unexpected']} unexpected; RSS "
          f"{result['rss_mib_after_warm_up']} -> {result['rss_mib_end']} MiB "
          f"({result['rss_growth_pct']:+.2f}%); after: {result['server_after']}; "
          f"server log problems: {len(result['server_log_problems'])}")


def check(result: dict[str, Any]) -> list[str]:
    failures = []
    if result["unexpected"]:
        failures.append(f"{result['unexpected']} requests got a status outside their set")
    if result["rss_growth_pct"] > MAX_RSS_GROWTH * 100:
        failures.append(f"RSS grew {result['rss_growth_pct']}% (limit "
                        f"{MAX_RSS_GROWTH:.0%})")
    if result["server_log_problems"]:
        failures.append(f"the server logged {result['server_log_problems'][:3]}")
    after = result["server_after"]
    if after["readyz"] != 200 or after["queue_depth"] != 0:
        failures.append(f"after the soak the server is not idle and ready: {after}")
    return failures


if __name__ == "__main__":
    main()
