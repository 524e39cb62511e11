"""Does torch.compile pay for DenseNet-BC-100's training step on a CPU? Not here: 0.70x.

Last run (2026-11-30, 2-core AMD EPYC VM, AVX512 with native bf16, torch 2.14.1, ONE thread,
CPU clock of the process; the other core was running a timing measurement and this one was
shared with other work at nice 19, so the compile time is inflated, the images/s are not):
    python bench/densenet_compile.py eager fp32 cl    first step 53.1 s,   28.4 images/s
    python bench/densenet_compile.py compile fp32 cl  first step 1103.5 s, 20.0 images/s
    python bench/densenet_compile.py eager bf16 cl    first step 14.9 s,   36.7 images/s
    (that bf16 row came from a first version that also ran the backward under autocast)
    (compile bf16 was stopped after the fp32 result: the compiled step was slower, and its
    compilation took minutes even with a persistent TORCHINDUCTOR_CACHE_DIR.)
So inductor's fused kernels lose to eager oneDNN convolutions on this network at 1x28x28,
batch 128, and the trainer's --compile stays off by default. Issue 11's 3x for DenseNet-BC
is not reached; see bench/model_throughput.py for where the step goes.

The model is torchvision's DenseNet class as imgcls built DenseNet-BC-100 before issue 11
(bench/model_throughput.old_densenet_bc_100), channels_last, SGD with momentum.

    python bench/densenet_compile.py {eager|compile} {fp32|bf16} {cl|contiguous}
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from model_throughput import BATCH, CHANNELS, CLASSES, IMAGE_SIZE, old_densenet_bc_100  # noqa: E402

STEPS = 4


def precision(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def main(mode: str, dtype_name: str, layout: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if dtype_name == "bf16" else None
    memory_format = torch.channels_last if layout == "cl" else torch.contiguous_format
    model = old_densenet_bc_100().to(memory_format=memory_format)
    images = torch.randn(BATCH, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).to(memory_format=memory_format)
    labels = torch.randint(0, CLASSES, (BATCH,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    forward = torch.compile(model) if mode == "compile" else model

    def step() -> None:
        with precision(dtype):
            loss = nn.functional.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    started = time.time()
    step()  # compiles, when compiling
    print(f"{mode} {dtype_name} {layout} first step {time.time() - started:.1f} s", flush=True)
    started = time.process_time()
    for _ in range(STEPS):
        step()
    rate = STEPS * BATCH / (time.process_time() - started)
    print(f"{mode} {dtype_name} {layout} {rate:.1f} images/s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
