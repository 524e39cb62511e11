"""A core install (no extras) trains, evaluates and predicts; a verb that needs an extra says
which, in one line: `imgcls: error: imgcls tune needs optuna: pip install 'imgcls[tune]'`.

A package is made missing by putting None in sys.modules: `import optuna` then raises
ImportError, as it does where the package was never installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imgcls.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
# Every package that only an extra brings (pyproject.toml's serve, tensorboard and tune).
EXTRA_PACKAGES = ("fastapi", "starlette", "pydantic", "uvicorn", "multipart", "python_multipart",
                  "prometheus_client", "httpx", "onnx", "onnxruntime", "onnxscript", "optuna",
                  "sqlalchemy", "tensorboard")


def _missing(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_tune_without_optuna(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture) -> None:
    _missing(monkeypatch, "optuna")
    line = _one_error_line(["tune", "--data", "digits", "--trials", "1"], capsys)
    assert line == "imgcls: error: imgcls tune needs optuna: pip install 'imgcls[tune]'"


def test_serve_without_fastapi_and_uvicorn(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    _missing(monkeypatch, "fastapi", "uvicorn")
    line = _one_error_line(["serve", "model.safetensors"], capsys)
    assert line == ("imgcls: error: imgcls serve needs fastapi, uvicorn: "
                    "pip install 'imgcls[serve]'")


def test_onnx_export_without_onnx(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    # onnxscript imports onnx, so it fails in a fresh process; here an earlier export in this
    # process may have imported it already
    _missing(monkeypatch, "onnx", "onnxruntime", "onnxscript")
    line = _one_error_line(["export", "model.safetensors"], capsys)
    assert line == ("imgcls: error: imgcls export --format onnx needs onnx, onnxscript, "
                    "onnxruntime: pip install 'imgcls[serve]'")
    # The parity check is what needs onnxruntime.
    line = _one_error_line(["export", "model.safetensors", "--check-samples", "0"], capsys)
    assert line.endswith("needs onnx, onnxscript: pip install 'imgcls[serve]'")


@pytest.mark.multiprocess
@pytest.mark.slow
def test_core_install_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    """In a fresh process where no extra's package can be imported: the whole parser builds
    (every verb registered), and train, eval and predict run."""
    run_dir, image = tmp_path / "run", tmp_path / "digit.png"
    script = textwrap.dedent(f"""
        import sys
        for package in {EXTRA_PACKAGES!r}:
            sys.modules[package] = None
        from PIL import Image
        from imgcls.cli import main
        Image.new("L", (8, 8), 128).save({str(image)!r})
        for argv in (["--help"],
                     ["train", "--data", "digits", "--model", "lenet5", "--epochs", "1",
                      "--threads", "1", "--precision", "fp32", "--no-progress",
                      "-o", {str(run_dir)!r}],
                     ["eval", {str(run_dir)!r}, "--data", "digits", "--no-report"],
                     ["predict", {str(run_dir)!r}, {str(image)!r}, "--format", "json"]):
            code = main(argv)
            assert code == 0, (argv, code)
        loaded = sorted(name for name in {EXTRA_PACKAGES!r} if sys.modules.get(name))
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "model.safetensors").is_file()
    assert '"label"' in done.stdout
