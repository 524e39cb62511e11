"""`--backend auto`: the fastest candidate on this machine for each batch size in use.

On first use each candidate runs the batch sizes in use on seeded random pixels (timing.py);
a candidate whose probabilities differ from eager torch's by more than PARITY_TOLERANCE is
dropped, so auto never trades correctness for speed. The timings are cached, so a later
load builds only the winners. A batch of another size runs on the winner of the nearest
measured size (nearest in log scale: 64 is nearer 256 than 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from imgcls.errors import UserError
from imgcls.export.export_check import PARITY_TOLERANCE
from imgcls.predict.backends.base import Backend
from imgcls.predict.backends.timing import (
    Timings,
    fastest,
    median_ms,
    nearest,
    read_timings,
    write_timings,
)

# A batch this large or larger is timed at TIMED_BATCH_CAP: the ranking is the same and the
# first load of a big network does not spend minutes on it.
TIMED_BATCH_CAP = 64

Factory = Callable[[], Backend]


class AutoBackend:
    name = "auto"

    def __init__(self, candidates: dict[str, Factory], *, batch_sizes: Sequence[int],
                 timings_file: Path, machine: str, example: np.ndarray,
                 exact: set[str]) -> None:
        """`candidates`: name -> builder, eager "torch" first (the parity reference);
        `example`: pixels [B, C, H, W] for timing; `exact`: candidates held to parity."""
        sizes = sorted({max(1, min(size, TIMED_BATCH_CAP)) for size in batch_sizes})
        timings = read_timings(timings_file, machine)
        if not _covers(timings, candidates, sizes):
            timings = measure(candidates, sizes, example, exact)
            write_timings(timings_file, machine, timings)
        self.timings = {name: timings[name] for name in candidates if name in timings}
        self.chosen = {size: fastest(self.timings, size) for size in sizes}
        self.backends = {name: candidates[name]() for name in set(self.chosen.values())}

    def outputs(self, pixels: np.ndarray,
                batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        size = max(1, min(batch_size, len(pixels)))
        return self.backends[self.choice(size)].outputs(pixels, batch_size)

    def choice(self, size: int) -> str:
        return self.chosen[nearest(list(self.chosen), size)]


def measure(candidates: dict[str, Factory], sizes: list[int], example: np.ndarray,
            exact: set[str]) -> Timings:
    timings: Timings = {}
    reference: np.ndarray | None = None
    for name, build in candidates.items():  # one at a time: only one held in memory
        try:
            backend = build()
        except UserError:
            if reference is None:
                raise  # eager torch itself: nothing to compare against
            timings[name] = {}  # e.g. a damaged cached export: recorded, never chosen
            continue
        output = backend.outputs(example[: max(sizes)], max(sizes))[0]
        if reference is None:
            reference = output
        elif name in exact and float(np.abs(output - reference).max()) > PARITY_TOLERANCE:
            timings[name] = {}  # not the same function: recorded, never chosen
            continue
        timings[name] = {size: median_ms(lambda b=backend, s=size: b.outputs(
            example[:s], s)) for size in sizes}
        del backend
    return timings


def _covers(timings: Timings, candidates: dict[str, Factory], sizes: list[int]) -> bool:
    """Whether the stored timings rank every candidate (an int8 file exported since then
    is one more) at every size in use."""
    return set(candidates) <= set(timings) and all(
        size in sizes_ms for sizes_ms in timings.values() if sizes_ms for size in sizes)
