"""idx.py: IDX files, gzipped or plain, every value type, damaged files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from imgcls.data.idx import read_idx

_TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (big-endian values after a big-endian header)."""
    code = _TYPE_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_round_trip(tmp_path: Path, dtype: str, gzipped: bool) -> None:
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    raw = idx_bytes(array)
    path = tmp_path / "data-idx3-ubyte"  # gzip is recognized by content, not by name
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    loaded = read_idx(path)
    assert loaded.shape == (2, 3, 4) and loaded.dtype == np.dtype(dtype)
    assert np.array_equal(loaded, array)
    assert loaded.flags.writeable


def test_labels_are_one_dimensional(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.array([3, 1, 4], np.uint8)))
    assert read_idx(path).tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04not idx at all", "not an IDX file"),
        (idx_bytes(np.zeros((2, 2), np.uint8))[:-1], "header"),
        (gzip.compress(idx_bytes(np.zeros((2, 2), np.uint8)))[:-4], "damaged gzip"),
    ],
)
def test_damaged_files_raise_value_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_idx(path)
