"""Decoding a folder of JPEGs: imgcls' loader vs torchvision ImageFolder + DataLoader.

Last run: 2026-11-28, AMD EPYC VM, 2 cores (quiet), no GPU, torch 2.14.1, torchvision 0.29.1,
Pillow 13.0.0 (bench/results/decode_throughput.json), 10,000 JPEGs -> uint8 RGB 64x64,
decoding in 2 worker processes (threads before: 1.30x on the same quiet machine):
    imgcls       1805 img/s   torchvision ImageFolder + DataLoader(2 workers)  1058 img/s
    ratio 1.71x (medians of alternating rounds; the VM's speed drifts, so single rounds
    range widely; the run before: 1511 vs 858, 1.76x). Streaming (2 workers): 1875 img/s.
    cache: first load (decode + write) 7.0 s; second load (hit) 0.55 s, 0.59 s including a
    read of every pixel.
    cache key (stat of 10,000 files) 0.07 s; reading + hashing their 556 MB instead 0.67 s
    with every file in the page cache (a cold disk: the time to read 556 MB).

Data: 10,000 JPEGs (quality 90) of smooth colour gradients plus noise, 320-500 px a side,
10 classes, generated once into /tmp/imgcls-bench/jpeg10k (or --data).

Both pipelines read every image once, decoded to uint8 RGB 64x64 (shorter side resized,
centre crop), indexing the folder included, on the same 2 cores:
- imgcls: `load_source(folder, channels=3, image_size=64, cache=False)` -> one uint8
  tensor, decoded by 2 worker processes (one per core; `decode_file`: libjpeg scaled
  decode via PIL's draft, torchvision.io where that can't shrink). torch intra-op threads: 2.
- torchvision: `datasets.ImageFolder` (PIL loader) with Resize(64) + CenterCrop(64) +
  PILToTensor, `DataLoader(batch_size=256, num_workers=2)`: 2 decoding worker processes,
  plus the main process, which only waits for and receives batches.
The two alternate (--rounds times) and medians are reported, as this machine's speed drifts
by +-30%. Then: a load with the disk cache (decode + write), a second load (cache hit:
memory-mapped, timed with and without reading every pixel), streaming (the path a folder
larger than memory takes: StreamingImageSet.batches, 2 workers), and the cost of the cache
key (stat of every file) against hashing every file's bytes.

    python bench/decode_throughput.py [--rounds 3] [--size 64] [--data DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from imgcls.data.cache import source_key
from imgcls.data.file_index import index_folder
from imgcls.data.sources import load_source

from machine import describe

RESULTS = Path(__file__).parent / "results" / "decode_throughput.json"
DEFAULT_DATA = Path("/tmp/imgcls-bench/jpeg10k")
COUNT, CLASSES = 10_000, 10
WORKERS = 2  # = the cores of the machine this was written on; both pipelines get the same


def write_image(task: tuple[Path, int]) -> None:
    """One photo-like JPEG: a few smooth colour waves (different per class) plus noise."""
    path, seed = task
    rng = np.random.default_rng(seed)
    width, height = (int(side) for side in rng.integers(320, 501, 2))
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    waves = [np.sin(x * rng.uniform(1, 7) + phase) * np.cos(y * rng.uniform(1, 7) - phase)
             for phase in rng.uniform(0, 6, 3)]
    pixels = np.stack(waves, axis=-1) * 100 + 128 + rng.normal(0, 10, (height, width, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root: Path) -> Path:
    """Generate the data set once; a marker file says it is complete."""
    done = root / ".complete"
    if done.exists():
        return root
    tasks = []
    for index in range(COUNT):
        class_dir = root / f"class_{index % CLASSES}"
        class_dir.mkdir(parents=True, exist_ok=True)
        tasks.append((class_dir / f"{index:05d}.jpg", index))
    print(f"generating {COUNT} JPEGs in {root} ...", flush=True)
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(write_image, tasks, chunksize=64))
    done.write_text("")
    return root


def time_imgcls(root: Path, size: int) -> float:
    start = time.perf_counter()
    image_set = load_source(str(root), channels=3, image_size=size, cache=False)
    seconds = time.perf_counter() - start
    assert len(image_set) == COUNT, len(image_set)
    return COUNT / seconds


def time_torchvision(root: Path, size: int) -> float:
    start = time.perf_counter()
    dataset = datasets.ImageFolder(str(root), transform=transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]))
    loader = DataLoader(dataset, batch_size=256, num_workers=WORKERS)
    seen = sum(len(images) for images, _ in loader)
    seconds = time.perf_counter() - start
    assert seen == COUNT, seen
    return COUNT / seconds


def time_cache(root: Path, size: int) -> dict[str, float]:
    """Seconds: first load with the cache (decode + write), a hit, a hit + every pixel."""
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["IMGCLS_CACHE_DIR"] = cache_dir
        start = time.perf_counter()
        load_source(str(root), channels=3, image_size=size)
        first = time.perf_counter() - start
        start = time.perf_counter()
        hit = load_source(str(root), channels=3, image_size=size)
        opened = time.perf_counter() - start
        copy = hit.images.clone()  # reads every page of the file
        read_all = time.perf_counter() - start
        del os.environ["IMGCLS_CACHE_DIR"]
    assert copy.shape[0] == COUNT
    return {"first_load_s": first, "hit_s": opened, "hit_and_read_every_pixel_s": read_all}


def time_streaming(root: Path, size: int) -> float:
    image_set = load_source(str(root), channels=3, image_size=size, cache_limit=0)
    start = time.perf_counter()
    seen = sum(len(images) for images, _ in
               image_set.batches(torch.arange(len(image_set)), 256, workers=WORKERS))
    seconds = time.perf_counter() - start
    assert seen == COUNT, seen
    return COUNT / seconds


def time_keys(root: Path, size: int) -> dict[str, float]:
    """The cache key (stat only) against a hash of every file's bytes (page cache warm)."""
    index = index_folder(root)
    start = time.perf_counter()
    source_key(index, 3, size)
    stat_seconds = time.perf_counter() - start
    start = time.perf_counter()
    digest = hashlib.sha256()
    for path in index.paths:
        digest.update(path.read_bytes())
    read_seconds = time.perf_counter() - start
    total_bytes = sum(path.stat().st_size for path in index.paths)
    return {"stat_key_s": stat_seconds, "read_and_hash_bytes_s": read_seconds,
            "data_set_mb": total_bytes / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    root = make_folder(args.data)
    rates: dict[str, list[float]] = {"imgcls": [], "torchvision": []}
    for round_number in range(args.rounds):
        rates["imgcls"].append(time_imgcls(root, args.size))
        rates["torchvision"].append(time_torchvision(root, args.size))
        print(f"round {round_number + 1}: " + ", ".join(
            f"{name} {values[-1]:.0f} img/s" for name, values in rates.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "machine": {**describe(), "pillow": PIL.__version__},
        "images": COUNT, "image_size": args.size, "workers": WORKERS,
        "imgcls_images_per_s": round(medians["imgcls"], 1),
        "torchvision_images_per_s": round(medians["torchvision"], 1),
        "ratio": round(medians["imgcls"] / medians["torchvision"], 2),
        "rounds": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        "cache": {k: round(v, 3) for k, v in time_cache(root, args.size).items()},
        "streaming_images_per_s": round(time_streaming(root, args.size), 1),
        "cache_key": {k: round(v, 3) for k, v in time_keys(root, args.size).items()},
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
