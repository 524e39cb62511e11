"""The fp32 ONNX file the onnx backend runs: an adaptive pool whose windows are all alike is
written as the AvgPool2d it equals (the fast legacy exporter refuses it), others are kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.export.onnx_file import uniform_pools_as_avgpool


@pytest.mark.parametrize(("size", "out"),
                         [(6, 5), (8, 4), (7, 7), (9, 3), (5, 1), (12, 11), (10, 3)])
def test_a_uniform_adaptive_pool_becomes_the_avgpool_it_equals(size: int, out: int) -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(out))
    example = torch.randn(4, 2, size, size, generator=torch.Generator().manual_seed(0))
    expected = model(example)
    rewritten = uniform_pools_as_avgpool(model, example[:1])
    assert isinstance(rewritten[1], nn.AvgPool2d)
    assert torch.allclose(rewritten(example), expected, atol=1e-6)


@pytest.mark.parametrize(("size", "out"), [(8, 5), (10, 4), (7, 4)])
def test_an_adaptive_pool_with_unequal_windows_is_kept(size: int, out: int) -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(out))
    rewritten = uniform_pools_as_avgpool(model, torch.zeros(1, 1, size, size))
    assert isinstance(rewritten[0], nn.AdaptiveAvgPool2d)


def test_a_pool_of_unequal_sides_is_rewritten_per_side() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d((5, 3)))
    example = torch.randn(2, 1, 6, 9)
    expected = model(example)
    rewritten = uniform_pools_as_avgpool(model, example[:1])
    assert rewritten[0].kernel_size == (2, 3) and rewritten[0].stride == (1, 3)
    assert torch.allclose(rewritten(example), expected, atol=1e-6)
