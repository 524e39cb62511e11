"""build_components: training and the lr range test are set up by the same function, so
lr-find honours --deterministic and streams a data set too large for memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.config import TrainConfig
from imgcls.data.stream import StreamingImageSet
from imgcls.tools import lr_find
from imgcls.training import components, prepared_data

from imagefolder import write_folder


@pytest.mark.slow
def test_lr_find_and_training_share_the_setup(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    built: list[components.Components] = []
    original = components.build_components

    def recording(*args, **kwargs) -> components.Components:  # noqa: ANN002, ANN003
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(lr_find, "build_components", recording)
    config = TrainConfig(data="digits", model="lenet5", batch_size=32, threads=1,
                         deterministic=True)
    try:
        lr_find.find_lr(config, steps=10, output=tmp_path)
        assert torch.are_deterministic_algorithms_enabled()  # --deterministic held
    finally:
        torch.use_deterministic_algorithms(False)
    assert len(built) == 1 and not built[0].runtime.channels_last  # lenet5 runs NCHW


def test_lr_find_streams_a_large_folder(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    shapes = write_folder(tmp_path / "shapes", per_class=12)

    def whole_split(*_: object) -> None:
        raise AssertionError("the lr range test decoded a whole split")

    monkeypatch.setattr(prepared_data.PreparedData, "subset", whole_split)
    config = TrainConfig(data=str(shapes), model="lenet5", image_size=32, batch_size=8,
                         cache_limit=1e-6, workers=0, threads=1, precision="fp32")
    built: list[components.Components] = []
    original = components.build_components
    monkeypatch.setattr(lr_find, "build_components",
                        lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    result = lr_find.find_lr(config, steps=10, max_lr=1.0)
    assert isinstance(built[0].data.image_set, StreamingImageSet)
    assert len(result.lrs) >= 2
