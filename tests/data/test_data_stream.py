"""stream.py: a folder decoded batch by batch gives the in-memory path's pixels, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.data.decode import BadImageError
from imgcls.data.imageset import ImageSet
from imgcls.data.sources import load_source
from imgcls.data.stream import StreamingImageSet, default_cache_limit

from imagefolder import write_folder

FORMAT = {"channels": 3, "image_size": 16}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("stream") / "photos", per_class=8)


def _streaming(source: Path | str) -> StreamingImageSet:
    image_set = load_source(str(source), cache_limit=0, **FORMAT)  # tiny limit: streams
    assert isinstance(image_set, StreamingImageSet)
    return image_set


def _in_memory(source: Path | str) -> ImageSet:
    image_set = load_source(str(source), cache=False, **FORMAT)
    assert isinstance(image_set, ImageSet)
    return image_set


def test_a_limit_above_the_decoded_size_keeps_it_in_memory(folder: Path) -> None:
    assert isinstance(load_source(str(folder), cache=False, cache_limit=24 * 3 * 16 * 16,
                                  **FORMAT), ImageSet)
    assert isinstance(load_source(str(folder), cache=False, cache_limit=24 * 3 * 16 * 16 - 1,
                                  **FORMAT), StreamingImageSet)
    assert default_cache_limit() > 0


def test_metadata_matches_the_in_memory_set(folder: Path) -> None:
    streaming, memory = _streaming(folder), _in_memory(folder)
    assert torch.equal(streaming.labels, memory.labels)
    assert streaming.item_ids == memory.item_ids
    assert streaming.class_names == memory.class_names
    assert (streaming.preset_split, streaming.source, streaming.hflip_ok) == (
        memory.preset_split, memory.source, memory.hflip_ok)
    assert streaming.images.shape == memory.images.shape and len(streaming) == len(memory)
    assert (streaming.channels, streaming.image_size) == (3, 16)
    assert torch.equal(streaming.images[5], memory.images[5])


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_follow_the_requested_order(folder: Path, workers: int) -> None:
    streaming, memory = _streaming(folder), _in_memory(folder)
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(0))
    batches = list(streaming.batches(order, batch_size=5, workers=workers))
    assert [len(images) for images, _ in batches] == [5, 5, 5, 5, 4]
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    assert images.dtype == torch.uint8
    assert torch.equal(images, memory.images[order])
    assert torch.equal(labels, memory.labels[order])


def test_a_bad_file_is_left_out_and_recorded(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "photos", per_class=3)
    good = (root / "top" / "top_001.jpg").read_bytes()
    (root / "top" / "top_000x.jpg").write_bytes(good[: len(good) // 2])  # truncated
    streaming = _streaming(root)
    bad = streaming.item_ids.index("top/top_000x.jpg")
    with pytest.raises(BadImageError, match="truncated or corrupt image"):
        streaming.images[bad]
    first = list(streaming.batches(torch.arange(len(streaming)), 4, with_indices=True))
    assert sum(len(images) for images, _, _ in first) == len(streaming) - 1
    kept = torch.cat([indices for _, _, indices in first]).tolist()
    assert bad not in kept and kept == sorted(kept)
    assert streaming.skipped == [("top/top_000x.jpg", streaming.skipped[0][1])]
    assert "truncated" in streaming.skipped[0][1]
    # Known now: later calls leave it out before batching (full batches), recorded once.
    again = list(streaming.batches(torch.arange(len(streaming)), 4))
    assert [len(images) for images, _ in again] == [4, 4, 1]
    assert len(streaming.skipped) == 1


def test_a_batch_of_only_bad_files_is_not_yielded(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "photos", per_class=2)
    (root / "top" / "zz_broken.png").write_bytes(b"no image")
    streaming = _streaming(root)
    bad = streaming.item_ids.index("top/zz_broken.png")
    batches = list(streaming.batches([bad, 0, 1], batch_size=1))
    assert len(batches) == 2 and [reason for _, reason in streaming.skipped] == [
        "not an image (format not recognized)"]
