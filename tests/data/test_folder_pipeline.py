"""A folder of PNG and JPEG files in mixed sizes and modes: train, evaluate, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgcls.cli import main

from imagefolder import PATTERNS, write_folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = write_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=40)
    (root / "top" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # truncated
    run_dir = tmp_path_factory.mktemp("runs") / "shapes"
    code = main(["train", "--data", str(root), "--model", "lenet5", "--epochs", "12",
                 "--batch-size", "16", "--image-size", "32", "--precision", "fp32",
                 "--output", str(run_dir), "--no-progress"])
    assert code == 0
    return root, run_dir


@pytest.mark.slow
def test_training_skips_the_bad_file_and_learns(folder_run: tuple[Path, Path]) -> None:
    root, run_dir = folder_run
    skipped = (run_dir / "skipped.txt").read_text()
    assert "broken.png" in skipped and skipped.count("\n") == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == sorted(PATTERNS)
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]


@pytest.mark.slow
def test_eval_on_the_folder(folder_run: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    root, run_dir = folder_run
    assert main(["eval", str(run_dir / "model.safetensors"), "--data", str(root),
                 "--split", "all", "--output", str(run_dir / "all.json")]) == 0
    metrics = json.loads((run_dir / "all.json").read_text())
    assert metrics["num_samples"] == 3 * 40 and metrics["split"] == "all"
    assert "macro avg" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_a_folder_as_json(folder_run: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture) -> None:
    root, run_dir = folder_run
    code = main(["predict", str(run_dir), str(root / "centre"), "--format", "json", "--topk", "2"])
    captured = capsys.readouterr()
    predictions = json.loads(captured.out)
    assert code == 0
    assert len(predictions) == 40
    good = [p for p in predictions if "error" not in p]
    assert len(good) == 40 and all(len(p["topk"]) == 2 for p in good)
    assert sum(p["label"] == "centre" for p in good) >= 36
    code = main(["predict", str(run_dir), str(root / "top"), "--format", "csv"])
    lines = capsys.readouterr()
    assert code == 1 and "broken.png" in lines.err  # reported; the rest still classified
    # The model has a trust record: whether each answer is unknown, and its familiarity.
    assert lines.out.splitlines()[0] == "input,label,score,topk,unknown,familiarity"
    assert len(lines.out.splitlines()) == 1 + 41


@pytest.mark.slow
def test_predict_table(folder_run: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    root, run_dir = folder_run
    image = sorted((root / "bottom").iterdir())[0]
    assert main(["predict", str(run_dir / "model.safetensors"), str(image)]) == 0
    assert "bottom" in capsys.readouterr().out
