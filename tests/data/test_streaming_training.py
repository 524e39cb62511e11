"""Folders larger than the memory limit stream through decoding workers; smaller ones are
cached on disk so a second run skips decoding and gets the same split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import imgcls
import imgcls.data.sources as sources
from imgcls.data.stream import StreamingImageSet

from imagefolder import write_folder


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "shapes", per_class=24)


@pytest.mark.slow
def test_a_folder_over_the_limit_streams_and_trains(shapes: Path, tmp_path: Path) -> None:
    bad = shapes / "top" / "top_000.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: found only when streamed
    run_dir = imgcls.train(data=str(shapes), model="lenet5", epochs=2, image_size=32,
                           batch_size=8, cache_limit=1e-6, workers=2, precision="fp32",
                           output=str(tmp_path / "run"), show_progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_samples"] > 0 and metrics["accuracy"] > 0.5
    assert "top_000.png" in (run_dir / "skipped.txt").read_text()
    assert bad.exists()  # reported, never deleted
    assert isinstance(sources.load_source(str(shapes), image_size=32, cache_limit=1),
                      StreamingImageSet)


@pytest.mark.slow
def test_second_run_skips_decoding_and_keeps_the_split(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.perf_counter()
    first = imgcls.train(data=str(shapes), model="lenet5", epochs=1, image_size=32,
                         output=str(tmp_path / "first"), show_progress=False)
    first_seconds = time.perf_counter() - started

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second run decoded images again")

    monkeypatch.setattr(sources, "decode_files", no_decoding)
    started = time.perf_counter()
    second = imgcls.train(data=str(shapes), model="lenet5", epochs=1, image_size=32,
                          output=str(tmp_path / "second"), show_progress=False)
    assert time.perf_counter() - started < first_seconds * 2  # sanity, not a benchmark
    assert (first / "split.json").read_text() == (second / "split.json").read_text()
