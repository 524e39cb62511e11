"""Read IDX files, the format of MNIST and Fashion-MNIST, gzipped or plain.

IDX layout: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the values, big-endian, row-major.
http://yann.lecun.com/exdb/mnist/ (bottom of the page).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type code -> numpy dtype; multi-byte types are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzip detected from its bytes, not its name).

    Raises ValueError when the file is not IDX or its size does not match its header.
    """
    raw = _read_bytes(Path(path))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path} has {len(raw)} bytes, its header {shape} implies {expected}")
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    # frombuffer gives a read-only view of `raw`; a native-endian copy is writable for torch.
    return values.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    with path.open("rb") as file:
        raw = file.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path} is a damaged gzip file ({error})") from error
    return raw
