"""A faster training forward for torchvision's DenseNet features, with the same math.

Where torchvision's forward loses the time (profiled on a 2-core AVX512-BF16 EPYC, DenseNet-BC-100,
batch 128, 1x28x28; bench/model_throughput.py has the numbers): passes over the growing
concatenated input of every layer, not the convolutions. Each layer copies the concatenation
(torch.cat), computes its BatchNorm's batch statistics over it, normalizes it, applies ReLU;
backward, BatchNorm's backward, and autograd adds each layer's gradient into every earlier map
slice by slice (in channels_last, runs of 12 values). What this forward does instead:

- Statistics once. In training mode a BatchNorm normalizes each channel by its batch mean and
  variance, and channel c of the concatenation is the same in every later layer, the
  transition and norm5. So each map is normalized once, when it is made, and each consumer
  applies only its own scale and shift, and updates its running statistics with the shared
  batch statistics, as its own BatchNorm would.
- No concatenation. A block's normalized maps live in one tensor, laid out channel-major
  (C, N, H, W): the first c channels, which a layer reads, are then one contiguous tensor, so
  the scale-shift reads them in place, as a (1, c, N*H, W) batch of one that BatchNorm's
  kernels take whole. The 1x1 convolution after it is a matrix product in the same layout, and
  so is a transition's; the transition's 2x2 average pool does not care which of the first two
  dimensions is the batch. Only the 3x3 convolutions see a batch-major map (48 channels in,
  12 out: a small copy each way).
- One gradient sum. The gradients of all consumers of a block's maps are added into one tensor
  of the same layout, one contiguous add per layer.
- Transitions pool first. A 1x1 convolution and an average pool commute, so the transition's
  product runs on a quarter of the pixels, and the 2x2 pool itself is a matrix product
  (avg_pool2d's CPU kernels were slower than the product they saved).

Gradients are the same function: the shared normalization's backward receives the sum of what
each consumer sends back, which is what each BatchNorm's backward gives, summed. Tests compare
logits, gradients and running statistics with torchvision's forward (tests/test_models.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torchvision.models.densenet import _DenseBlock, _DenseLayer, _Transition

_EPS = 1e-5  # torchvision's DenseNet builds every BatchNorm with the default eps
# The affine step as an eval-form batch_norm wants eps 0, which torch 2.10-2.11 refuse
# ("eps must be positive"); 1 + 1e-30 is 1 in every float type, so the result is the same.
_NO_EPS = 1e-30


def train_features(features: nn.Sequential, x: Tensor) -> Tensor:
    """torchvision DenseNet's `features(x)` in training mode, each map normalized once.

    Falls back to the plain forward where a BatchNorm is frozen (eval mode, no running
    statistics) or has another eps, since then the statistics are not shared; where autograd
    is off; and under torch.compile, which fuses the plain forward's passes itself."""
    plain = torch.compiler.is_compiling() or not torch.is_grad_enabled()
    if plain or not _supported(features):
        return features(x)
    block: _BlockMaps | None = None
    for module in features.children():
        if isinstance(module, _DenseBlock):
            block = _BlockMaps(x, _block_channels(x, module))
            for layer in module.values():
                block.add(_dense_layer(layer, block))
        elif isinstance(module, _Transition):
            assert block is not None, "a transition comes after a dense block"
            x = _transition(module, block)
            block.finish()
            block = None
        elif block is not None and isinstance(module, nn.BatchNorm2d):  # norm5
            x = _batch_major(block.scale_shift(module), block.shape)
            block.finish()
        else:  # the stem: conv0, norm0, relu0, pool0
            x = module(x)
    return x


def _supported(features: nn.Module) -> bool:
    norms_train = all(
        norm.training and norm.track_running_stats and norm.affine and norm.eps == _EPS
        for norm in features.modules()
        if isinstance(norm, nn.BatchNorm2d)
    )
    pooled = all(isinstance(transition.pool, nn.AvgPool2d)  # which commutes with a 1x1 conv
                 for transition in features.modules() if isinstance(transition, _Transition))
    pointwise = all(  # torchvision's 1x1 convolutions, which run here as matrix products
        conv.bias is None and conv.groups == 1 and conv.stride == (1, 1)
        for module in features.modules()
        if isinstance(module, (_DenseLayer, _Transition))
        for conv in [module.conv1 if isinstance(module, _DenseLayer) else module.conv]
    )
    return norms_train and pooled and pointwise


def _block_channels(x: Tensor, block: _DenseBlock) -> int:
    return x.shape[1] + sum(layer.conv2.out_channels for layer in block.values())


def _dense_layer(layer: _DenseLayer, block: _BlockMaps) -> Tensor:
    maps = layer.relu1(block.scale_shift(layer.norm1))
    weight = layer.conv1.weight.reshape(layer.conv1.out_channels, -1).to(maps.dtype)
    bottleneck = _PointwiseToChannelsLast.apply(maps, weight, block.shape)
    new_features = layer.conv2(layer.relu2(layer.norm2(bottleneck)))
    if layer.drop_rate > 0:
        new_features = F.dropout(new_features, p=layer.drop_rate, training=True)
    return new_features


def _transition(transition: _Transition, block: _BlockMaps) -> Tensor:
    """Scale-shift, ReLU, 2x2 average pool and 1x1 conv, all channel-major: the pool takes
    (C, N, H, W) as a batch of C maps of N channels. Returns an (N, C, H, W) view of it.

    torchvision convolves, then pools. The two commute: both are linear, the pool averages
    pixels within a channel, the convolution mixes channels within a pixel. Pooling first
    runs the product on a quarter of the pixels (a fifth of DenseNet-BC-100's 1x1 FLOPs)."""
    maps = transition.relu(block.scale_shift(transition.norm))
    pooled = _pool(transition.pool, maps.view(maps.shape[1], *block.shape))  # (C, N, H', W')
    channels, batch = pooled.shape[:2]
    reduced = _pointwise(transition.conv, pooled.view(1, channels, -1, pooled.shape[-1]))
    return reduced.view(-1, batch, *pooled.shape[2:]).transpose(0, 1)


def _pool(pool: nn.Module, maps: Tensor) -> Tensor:
    """`pool` of channel-major (C, N, H, W) maps. A 2x2 average pool of even-sized maps runs
    as one matrix product: each pair of rows, 2W values in memory, times a (2W, W/2) matrix of
    quarters. avg_pool2d's CPU kernels are the bottleneck here (bf16, 216 x 128 maps of 28x28,
    1 thread: 45 ms forward and 85 ms backward, against 8 and 25 ms as a product)."""
    height, width = maps.shape[-2:]
    if _is_pool_2x2(pool) and height % 2 == 0 and width % 2 == 0:
        column = torch.arange(2 * width, device=maps.device)
        quarters = ((column % width) // 2)[:, None] == torch.arange(width // 2, device=maps.device)
        pooled = torch.mm(maps.reshape(-1, 2 * width), quarters.to(maps.dtype) / 4)
        return pooled.view(*maps.shape[:-2], height // 2, width // 2)
    return pool(maps)


def _is_pool_2x2(pool: nn.Module) -> bool:
    return (isinstance(pool, nn.AvgPool2d) and not pool.ceil_mode
            and _pair(pool.kernel_size) == _pair(pool.stride) == (2, 2)
            and _pair(pool.padding) == (0, 0) and pool.divisor_override is None)

def _pointwise(conv: nn.Conv2d, maps: Tensor) -> Tensor:
    """A 1x1 convolution of channel-major maps (1, C, N*H, W): one matrix product."""
    channels = maps.shape[1]
    out = torch.mm(conv.weight.reshape(conv.out_channels, channels), maps.view(channels, -1))
    return out.view(1, conv.out_channels, *maps.shape[2:])


class _PointwiseToChannelsLast(torch.autograd.Function):
    """A 1x1 convolution from channel-major maps (1, C, N*H, W) to an (N, C', H, W)
    channels_last tensor, as one matrix product, maps^T @ weight^T: the 3x3 convolution after
    it runs fastest in channels_last, and a transpose copy between the layouts costs as much
    as the product. The backward products are laid out so the maps' gradient comes back
    channel-major and contiguous, like the maps (mm's own backward would return it
    transposed, and every pass after it would crawl)."""

    @staticmethod
    def forward(ctx: Any, maps: Tensor, weight: Tensor, shape: tuple[int, int, int]) -> Tensor:
        ctx.save_for_backward(maps, weight)
        channels = maps.shape[1]
        batch, height, width = shape
        out = torch.mm(maps.view(channels, -1).t(), weight.t())  # (N*H*W, C')
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        maps, weight = ctx.saved_tensors
        channels, out_channels = maps.shape[1], weight.shape[0]
        rows = grad.permute(0, 2, 3, 1).reshape(-1, out_channels)  # (N*H*W, C'), no copy
        grad_maps = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_maps = torch.mm(weight.t(), rows.t()).view_as(maps)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.mm(rows.t(), maps.view(channels, -1).t())
        return grad_maps, grad_weight, None


def _batch_major(maps: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Channel-major maps, (1, C, N*H, W) or (C, N, H, W), as an (N, C, H, W) view;
    `shape` is (N, H, W)."""
    return maps.reshape(-1, *shape).transpose(0, 1)


class _BlockMaps:
    """A dense block's feature maps, batch-normalized without affine, in one channel-major
    tensor (C, N, H, W): the block's input first, then each layer's new maps; their batch
    statistics; and, during the backward pass, the sum of the gradients all consumers send."""

    def __init__(self, first: Tensor, channels: int) -> None:
        batch, _, height, width = first.shape
        self.shape = (batch, height, width)
        self.values = torch.empty((channels, batch, height, width), dtype=first.dtype,
                                  device=first.device)
        self.grads: Tensor | None = None
        self.filled = 0
        self.tokens: list[Tensor] = []
        self.means: list[Tensor] = []
        self.variances: list[Tensor] = []
        self.add(first)

    def add(self, features: Tensor) -> None:
        """Normalize and store new (N, C, H, W) maps (no copy to channel-major when they are
        a view of channel-major maps already, as a transition's are)."""
        maps = features.transpose(0, 1).contiguous()
        channels = maps.shape[0]
        # momentum 1 makes F.batch_norm write the batch mean and unbiased variance into these;
        # fp32 at least, as BatchNorm keeps statistics, also for a bf16 map under autocast.
        dtype = torch.promote_types(maps.dtype, torch.float32)
        mean = torch.zeros(channels, device=maps.device, dtype=dtype)
        variance = torch.ones(channels, device=maps.device, dtype=dtype)
        normalized = F.batch_norm(_as_batch_of_one(maps), mean, variance, None, None, True, 1.0,
                                  _EPS)
        self.tokens.append(_Store.apply(self, self.filled, normalized))
        self.filled += channels
        self.means.append(mean)
        self.variances.append(variance)

    def scale_shift(self, norm: nn.BatchNorm2d) -> Tensor:
        """`norm` applied to the concatenation of the maps so far (its training-mode forward),
        channel-major: (1, C, N*H, W)."""
        _track(norm, torch.cat(self.means), torch.cat(self.variances))
        maps = _Prefix.apply(self, self.filled, *self.tokens)
        # BatchNorm in eval form with mean 0, variance 1 and eps 0 is exactly the affine step,
        # in one fused pass forward and backward.
        zeros, ones = torch.zeros_like(norm.weight), torch.ones_like(norm.weight)
        return F.batch_norm(maps, zeros, ones, norm.weight, norm.bias, False, 0.0, _NO_EPS)

    def finish(self) -> None:
        """After the last consumer read the maps: the graph holds the tokens from here on.
        Kept, they close a cycle (block -> token -> its autograd node -> ctx -> block) through
        C++ objects Python's collector cannot see, and every step's maps stayed alive (~84 MB
        a step for densenet_bc_40 at batch 128: a 25-minute run was killed for memory)."""
        self.tokens.clear()

    def add_grad(self, channels: int, grad: Tensor) -> None:
        """Adds a consumer's gradient for the first `channels` maps to the sum."""
        grad = grad.view(channels, *self.shape)
        if self.grads is None and channels == self.values.shape[0]:
            # The last consumer (a transition or norm5) reads every map and comes first back.
            self.grads = grad.clone()
        elif self.grads is None:
            self.grads = torch.zeros_like(self.values)
            self.grads[:channels] = grad
        else:
            self.grads[:channels] += grad


def _as_batch_of_one(maps: Tensor) -> Tensor:
    """Contiguous channel-major (C, N, H, W) as (1, C, N*H, W): per-channel math unchanged."""
    channels, batch, height, width = maps.shape
    return maps.view(1, channels, batch * height, width)


class _Store(torch.autograd.Function):
    """Writes normalized maps into the block's tensor. Returns a token (an empty tensor)
    whose place in the graph makes the maps' backward wait for all their consumers; that
    backward then returns their summed gradient for the maps' channels."""

    @staticmethod
    def forward(ctx: Any, block: _BlockMaps, start: int, normalized: Tensor) -> Tensor:
        stop = start + normalized.shape[1]
        block.values[start:stop].view_as(normalized).copy_(normalized)
        ctx.block, ctx.start, ctx.stop, ctx.dtype = block, start, stop, normalized.dtype
        return normalized.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, _token: Tensor) -> tuple[None, None, Tensor]:
        block, ctx.block = ctx.block, None  # nothing else of this node needs the maps
        grads = block.grads
        if grads is None:  # no consumer sent a gradient back
            grads = block.grads = torch.zeros_like(block.values)
        return None, None, _as_batch_of_one(grads[ctx.start:ctx.stop]).to(ctx.dtype)


class _Prefix(torch.autograd.Function):
    """The first `channels` maps, (1, C, N*H, W), read in place: a torch.cat of the maps so far
    without the copy.

    It returns an alias of the block's tensor that has its own version counter: the block
    writes later maps into later channels of the same tensor, which would otherwise trip the
    version check of every consumer that saved its input for backward, although the channels
    it read never change. Its backward adds the gradient into the block's gradient sum. The
    tokens it takes order each map's backward after this one."""

    @staticmethod
    def forward(ctx: Any, block: _BlockMaps, channels: int, *tokens: Tensor) -> Tensor:
        ctx.block, ctx.channels, ctx.tokens = block, channels, len(tokens)
        prefix = _as_batch_of_one(block.values[:channels])
        alias = prefix.new_empty(0)
        return alias.set_(prefix.untyped_storage(), prefix.storage_offset(), prefix.shape,
                          prefix.stride())

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        ctx.block.add_grad(ctx.channels, grad)
        ctx.block = None  # nothing else of this node needs the maps
        no_grad = grad.new_zeros(())  # the tokens carry order, not values
        return (None, None, *(no_grad,) * ctx.tokens)


@torch.no_grad()
def _track(norm: nn.BatchNorm2d, mean: Tensor, variance: Tensor) -> None:
    """The running-statistics update norm's own forward would make with these batch statistics."""
    assert norm.num_batches_tracked is not None and norm.running_mean is not None
    norm.num_batches_tracked.add_(1)
    momentum = norm.momentum
    factor = momentum if momentum is not None else 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    norm.running_var.mul_(1 - factor).add_(variance, alpha=factor)
