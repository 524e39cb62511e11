"""A user's mistake: one line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.cli import main

from imagefolder import write_folder


def _error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _train(*arguments: str) -> list[str]:
    return ["train", "--epochs", "1", "--no-progress", *arguments]


def test_missing_data_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _error_line(_train("--data", str(tmp_path / "nowhere")), capsys)
    assert "nowhere" in line and "not an existing" in line


@pytest.mark.slow
def test_empty_class_folder_is_left_out_with_a_warning(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    # Not a stop (issue 3: a folder with an empty class trains): the class is left out, and
    # the warning points at skipped.txt, which names the folder.
    root = write_folder(tmp_path / "data", per_class=4)
    (root / "empty_class").mkdir()
    run_dir = tmp_path / "run"
    assert main(_train("--data", str(root), "--model", "lenet5", "-o", str(run_dir))) == 0
    assert "skipped.txt" in capsys.readouterr().out
    assert "empty_class/" in (run_dir / "skipped.txt").read_text()
    metadata = json.loads((run_dir / "metrics.json").read_text())
    assert "empty_class" not in metadata["class_names"]


def test_only_empty_class_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
    line = _error_line(_train("--data", str(tmp_path / "data")), capsys)
    assert "no images" in line


def test_one_class_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_folder(tmp_path / "data", per_class=2)
    for name in ("bottom", "centre"):
        for file in (root / name).iterdir():
            file.unlink()
        (root / name).rmdir()
    line = _error_line(_train("--data", str(root), "-o", str(tmp_path / "run")), capsys)
    assert "top" in line and "2" in line


@pytest.mark.parametrize(("arguments", "expected"), [
    (("--model", "resnet19"), "resnet18"),  # suggests the close match
    (("--optimizer", "lbfgs"), "adamw"),  # lists the choices
    (("--epochs", "0"), "--epochs"),
    (("--lr", "0"), "--lr"),
    (("--lr", "-0.1"), "--lr"),
    (("--model", "lenet5", "--image-size", "16"), "28"),
    (("--batch-size", "zero"), "--batch-size"),
])
def test_bad_arguments(arguments: tuple[str, ...], expected: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture) -> None:
    line = _error_line(_train(*arguments, "-o", str(tmp_path / "run")), capsys)
    assert expected in line


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for verb in (["eval", str(tmp_path / "m.safetensors"), "--data", "digits"],
                 ["predict", str(tmp_path / "m.safetensors"), "x.png"]):
        assert "m.safetensors" in _error_line(verb, capsys)


def test_not_a_model_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not a model")
    assert "model.safetensors" in _error_line(["eval", str(fake), "--data", "digits"], capsys)


@pytest.mark.slow
def test_existing_run_is_not_overwritten(digits_run: Path, capsys: pytest.CaptureFixture) -> None:
    line = _error_line(_train("--model", "lenet5", "-o", str(digits_run)), capsys)
    assert "--overwrite" in line and "--resume" in line


@pytest.mark.multiprocess
@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imgcls.cli", "train", "--data", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "absent" in result.stderr
