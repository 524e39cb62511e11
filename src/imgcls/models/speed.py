"""How fast a network trains and predicts on this machine, and what a CPU epoch of it costs.

measure_throughput times the real training step (train mode, cross-entropy, SGD with momentum,
the memory format and autocast precision the network's ModelSpec picks) and batched inference
on random images: a few warmup steps (oneDNN builds its kernels on the first), then steps for
about `seconds`. `imgcls models --bench` prints it; a time-budget planner can call it.

estimated_epoch_seconds is the estimate without measuring, behind `imgcls models`'
CPU-practical column: a training step costs about 3x the forward FLOPs (forward, and a
backward of about twice that), run at ASSUMED_CPU_GFLOPS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from imgcls.models.info import mflops
from imgcls.models.registry import create_model, get_spec
from imgcls.runtime import Requested, autocast, resolve

# Effective training GFLOP/s assumed for a 2-core laptop-class CPU in fp32. Measured training
# steps on 2-core AVX2 EPYC VMs (issue 11) reach 84 for ResNet-18, 26 for DenseNet-BC and
# 12 for LeNet-5; CPUs with native bf16 run about twice as fast. 50 sits between: an estimate
# to sort networks into practical or not, not a prediction of any one run.
ASSUMED_CPU_GFLOPS = 50.0
# CPU-practical: one epoch of Fashion-MNIST's training set at this input size in this long.
PRACTICAL_EPOCH_S = 300.0
FASHION_MNIST_TRAIN_IMAGES = 60_000
# A training step (forward, backward for inputs and weights) costs about 3 forwards.
TRAIN_FLOPS_PER_FORWARD = 3.0


def estimated_epoch_seconds(
    forward_mflops: float, images: int = FASHION_MNIST_TRAIN_IMAGES,
    gflops: float = ASSUMED_CPU_GFLOPS,
) -> float:
    return images * TRAIN_FLOPS_PER_FORWARD * forward_mflops / (gflops * 1e3)


def cpu_practical(forward_mflops: float) -> bool:
    return estimated_epoch_seconds(forward_mflops) <= PRACTICAL_EPOCH_S


@dataclass(frozen=True)
class Throughput:
    """Measured speed of one network at one input size on this machine."""

    model: str
    train_images_per_s: float
    infer_images_per_s: float
    forward_mflops: float  # per image
    precision: str  # the autocast dtype of the training step: "bf16", "fp16" or "fp32"
    channels_last: bool
    batch_size: int
    threads: int

    @property
    def train_gflops(self) -> float:
        """Achieved training GFLOP/s: 3x the forward FLOPs per image, times images/s."""
        return TRAIN_FLOPS_PER_FORWARD * self.forward_mflops * self.train_images_per_s / 1e3

    def epoch_seconds(self, images: int) -> float:
        return images / self.train_images_per_s


def measure_throughput(
    name: str,
    *,
    image_size: int,
    channels: int,
    num_classes: int = 10,
    batch_size: int = 128,
    seconds: float = 1.5,
    warmup_steps: int = 2,
    precision: str = "auto",
    device: torch.device | None = None,
    width: float | None = None,
) -> Throughput:
    """Training and inference images/s of a fresh `name`, on random data."""
    runtime = resolve(Requested(precision=precision), get_spec(name), device=device)
    model = create_model(name, num_classes=num_classes, in_channels=channels,
                         image_size=image_size, width=width)
    forward_mflops = mflops(model, channels, image_size)
    batch = RandomBatch.make(batch_size, channels, image_size, num_classes, runtime.device,
                             runtime.channels_last)
    model = batch.place(model)
    timing = Timing(seconds, warmup_steps)
    return Throughput(
        model=name, train_images_per_s=timing.training(model, batch, runtime.dtype),
        infer_images_per_s=timing.inference(model, batch, runtime.dtype),
        forward_mflops=forward_mflops, precision=runtime.precision,
        channels_last=runtime.channels_last, batch_size=batch_size,
        threads=torch.get_num_threads(),
    )


@dataclass(frozen=True)
class RandomBatch:
    """Random images and labels, in the memory format the network runs in."""

    images: torch.Tensor
    labels: torch.Tensor
    channels_last: bool

    @classmethod
    def make(
        cls, batch_size: int, channels: int, image_size: int, num_classes: int,
        device: torch.device, channels_last: bool,
    ) -> RandomBatch:
        images = torch.randn(batch_size, channels, image_size, image_size, device=device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, num_classes, (batch_size,), device=device)
        return cls(images, labels, channels_last)

    def place(self, model: nn.Module) -> nn.Module:
        """`model` on the batch's device, in its memory format."""
        model = model.to(self.images.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


@dataclass(frozen=True)
class Timing:
    """How long to time a network for: seconds per measure, untimed first steps, and the
    clock: wall time, or this process's CPU time (at one thread, the compute time it got on
    a machine whose cores others are also using)."""

    seconds: float = 1.5
    warmup_steps: int = 2
    clock: Callable[[], float] = time.perf_counter

    def training(self, model: nn.Module, batch: RandomBatch, dtype: torch.dtype | None) -> float:
        """Training images/s: train mode, cross-entropy, backward, an SGD step."""
        return self.rate(_train_step(model, batch, dtype), len(batch.labels))

    def inference(self, model: nn.Module, batch: RandomBatch, dtype: torch.dtype | None) -> float:
        """Inference images/s: eval mode, inference_mode."""
        return self.rate(_predict_step(model, batch.images, dtype), len(batch.labels))

    def rate(self, step: Callable[[], None], batch_size: int) -> float:
        """Images/s of `step`, which handles `batch_size` images a call."""
        for _ in range(self.warmup_steps):
            step()
        steps, started = 0, self.clock()
        # At least two steps, so one slow step (a page-fault storm, a busy core) weighs half.
        while steps < 2 or self.clock() - started < self.seconds:
            step()
            steps += 1
        return steps * batch_size / (self.clock() - started)


def _train_step(
    model: nn.Module, batch: RandomBatch, dtype: torch.dtype | None
) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images, labels = batch.images, batch.labels

    def step() -> None:
        model.train()
        with autocast(images.device, dtype):
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _synchronize(images.device)

    return step


def _predict_step(
    model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None
) -> Callable[[], None]:
    def step() -> None:
        model.eval()
        with torch.inference_mode(), autocast(images.device, dtype):
            model(images)
        _synchronize(images.device)

    return step


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
