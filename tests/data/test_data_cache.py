"""cache.py: a second load of an unchanged folder or CSV reads the decoded images from disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from imgcls.data import sources
from imgcls.data.imageset import ImageSet
from imgcls.data.sources import load_source

from imagefolder import write_folder

FORMAT = {"channels": 3, "image_size": 16}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGCLS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "photos", per_class=5)
    (root / "top" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts decode_files calls (the number of files each was given)."""
    calls: list[int] = []
    real = sources.decode_files

    def counting(paths, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(paths))
        return real(paths, **kwargs)

    monkeypatch.setattr(sources, "decode_files", counting)
    return calls


def _assert_same(first: ImageSet, second: ImageSet) -> None:
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)
    assert first.item_ids == second.item_ids
    assert first.class_names == second.class_names
    assert first.preset_split == second.preset_split
    assert first.skipped == second.skipped
    assert (first.source, first.hflip_ok) == (second.source, second.hflip_ok)


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("decoded although the cache holds these images")


def test_hit_returns_the_identical_set_without_decoding(
    folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_source(str(folder), **FORMAT)
    assert len(first.skipped) == 1 and len(list(cache_dir.glob("*.u8"))) == 1
    monkeypatch.setattr(sources, "decode_files", _fail)
    second = load_source(str(folder), **FORMAT)
    _assert_same(first, second)


def test_another_format_is_another_entry(folder: Path, decode_calls: list[int]) -> None:
    load_source(str(folder), **FORMAT)
    gray = load_source(str(folder), channels=1, image_size=16)
    load_source(str(folder), **FORMAT)
    load_source(str(folder), channels=1, image_size=16)
    assert gray.images.shape[1] == 1 and len(decode_calls) == 2


def test_a_touched_file_invalidates(folder: Path, decode_calls: list[int]) -> None:
    load_source(str(folder), **FORMAT)
    target = sorted((folder / "bottom").iterdir())[0]
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    load_source(str(folder), **FORMAT)
    assert len(decode_calls) == 2


def test_a_rewritten_file_gives_its_new_pixels(
    folder: Path, cache_dir: Path, decode_calls: list[int]
) -> None:
    first = load_source(str(folder), **FORMAT)
    target = folder / "centre" / "centre_000.png"
    write_folder(folder.parent / "other", per_class=1, seed=7)
    target.write_bytes((folder.parent / "other" / "top" / "top_000.png").read_bytes())
    second = load_source(str(folder), **FORMAT)
    row = second.item_ids.index("centre/centre_000.png")
    assert len(decode_calls) == 2 and not torch.equal(first.images[row], second.images[row])
    assert len(list(cache_dir.glob("*.u8"))) == 1  # the stale entry is gone


def test_a_truncated_entry_is_rebuilt(
    folder: Path, cache_dir: Path, decode_calls: list[int]
) -> None:
    first = load_source(str(folder), **FORMAT)
    (pixels,) = cache_dir.glob("*.u8")
    pixels.write_bytes(pixels.read_bytes()[:1000])
    _assert_same(first, load_source(str(folder), **FORMAT))
    _assert_same(first, load_source(str(folder), **FORMAT))
    assert len(decode_calls) == 2  # rebuilt once, then hit again


@pytest.mark.parametrize("content", ["", "{not json", '{"format": "imgcls-decoded-v1"}', "[]"])
def test_a_broken_sidecar_is_rebuilt(
    folder: Path, cache_dir: Path, decode_calls: list[int], content: str
) -> None:
    first = load_source(str(folder), **FORMAT)
    (meta,) = cache_dir.glob("*.json")
    meta.write_text(content)
    _assert_same(first, load_source(str(folder), **FORMAT))
    assert len(decode_calls) == 2


def test_relabelled_csv_invalidates(tmp_path: Path, folder: Path) -> None:
    files = sorted(str(path) for path in folder.rglob("*_00[0-3].*"))
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,label\n" + "".join(f"{f},{i % 2}\n" for i, f in enumerate(files)))
    first = load_source(str(csv_path), **FORMAT)
    csv_path.write_text("path,label\n" + "".join(f"{f},{i % 3}\n" for i, f in enumerate(files)))
    second = load_source(str(csv_path), **FORMAT)
    assert first.class_names == ["0", "1"] and second.class_names == ["0", "1", "2"]


def test_cache_false_writes_nothing(folder: Path, cache_dir: Path) -> None:
    load_source(str(folder), cache=False, **FORMAT)
    assert not cache_dir.exists()


def test_an_unwritable_cache_warns_and_loads(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("IMGCLS_CACHE_DIR", str(blocker / "cache"))  # under a file: can't mkdir
    image_set = load_source(str(folder), **FORMAT)
    assert len(image_set) == 15 and "not cached" in capsys.readouterr().err
