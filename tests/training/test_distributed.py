"""Data-parallel training under torchrun on the CPU (Gloo over loopback)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imgcls
from imgcls.training.distributed import Distributed, shard

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

EPOCHS = 6
PER_RANK_BATCH = 32


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(*arguments: str) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "imgcls", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_shards_are_disjoint_and_cover_the_order() -> None:
    batches = list(torch.randperm(103).split(10))  # 11 batches, the last of 3
    shards = [shard(batches, Distributed(rank, 3)) for rank in range(3)]
    assert len({len(part) for part in shards}) == 1  # every rank steps alike
    seen = torch.cat([torch.cat(part) for part in shards])
    assert len(seen) == len(set(seen.tolist()))  # disjoint
    assert set(seen.tolist()) == set(torch.cat(batches[:9]).tolist())  # all but the remainder


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("ddp")
    result = _torchrun("train", "--data", "digits", "--model", "lenet5", "--epochs",
                       str(EPOCHS), "--batch-size", str(PER_RANK_BATCH), "--threads", "1",
                       "--no-progress", "-o", str(runs / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "run"


def test_both_ranks_train_one_run_directory(ddp_run: Path) -> None:
    assert [p.name for p in ddp_run.parent.iterdir()] == ["run"]
    assert not list(ddp_run.glob(".*.tmp"))
    split = json.loads((ddp_run / "split.json").read_text())
    history = _history(ddp_run)
    assert len(history) == EPOCHS
    for record in history:
        # Images over all ranks: both shards, so about the whole train split per epoch.
        images = record["images_per_s"] * record["seconds"]
        assert len(split["train"]) - 2 * PER_RANK_BATCH <= images <= len(split["train"])


def test_accuracy_matches_one_process_with_the_same_global_batch(ddp_run: Path,
                                                                  tmp_path: Path) -> None:
    single = imgcls.train(data="digits", model="lenet5", epochs=EPOCHS,
                          batch_size=2 * PER_RANK_BATCH, threads=1,
                          output=str(tmp_path / "single"), show_progress=False)
    ddp = json.loads((ddp_run / "metrics.json").read_text())["accuracy"]
    one = json.loads((single / "metrics.json").read_text())["accuracy"]
    print(f"test accuracy: torchrun 2x{PER_RANK_BATCH} {ddp:.4f}, one process {one:.4f}")
    assert abs(ddp - one) <= 0.02, (ddp, one)


def test_resume_under_torchrun(ddp_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    shutil.copytree(ddp_run, run_dir)
    result = _torchrun("train", "--resume", str(run_dir), "--epochs", str(EPOCHS + 1))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["epoch"] for r in _history(run_dir)] == list(range(1, EPOCHS + 2))
    assert torch.load(run_dir / "last.pt", weights_only=True)["position"]["epoch"] == EPOCHS + 2
