"""Fine-tuning pretrained weights: fit the new head first, then train everything, each part
at its own rate (fastai's `fine_tune`: freeze, fit the head, unfreeze, discriminative rates).

A head left at its random start sends large, meaningless gradients into the pretrained
backbone in the first steps, undoing what the weights knew. Here the head is fitted before the
first step as a multinomial logistic regression (scikit-learn's, lbfgs) on the frozen
backbone's features of a sample of the train split: one forward pass over at most
HEAD_FIT_IMAGES images, seconds on a CPU, instead of fastai's epoch of head-only training.
The ImageNet normalization the weights were trained with replaces the data's own statistics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
import torch
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from torch import nn

from imgcls.config import TrainConfig
from imgcls.models import get_spec
from imgcls.models.imagenet_weights import imagenet_weights
from imgcls.runtime import RuntimeChoice

# Images whose features fit the head: enough for a linear model of a few thousand features
# and tens of classes; the forward pass over them is the cost (~10 s at 224 px on 2 cores).
HEAD_FIT_IMAGES = 4000
EXTRACT_BATCH = 128
# Fine-tuning with an optimizer other than the pretrained-finetune recipe's (which sets its own
# rate) and no --lr: the head learns at this share of that optimizer's from-scratch rate, the
# backbone lower still. Measured before that recipe, with adamw at batch 128: mobilenet_v2 on
# Fashion-MNIST, 100 per class at 96 px, 60 s: test accuracy 0.794 at 2e-3, 0.805 at 5e-4
# (2,000 test images).
FINE_TUNE_LR_SHARE = 0.25
# The logistic regression's inverse L2 strength: scikit-learn's default, which the whole
# network's fine-tuning then refines.
HEAD_C = 1.0


def imagenet_stats(model_name: str, channels: int) -> dict | None:
    """The normalization torchvision's ImageNet weights of `model_name` expect, in the model
    file's form; grey images take the mean over the colours (the first conv sums them:
    models.pretrained._adapt_input_conv). None for a network without such weights."""
    network = get_spec(model_name).torchvision_name
    if network is None:
        return None
    record = imagenet_weights(network)
    mean, std = list(record.mean), list(record.std)
    if channels == 1:
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    return {"mode": "meanstd", "mean": mean, "std": std}


def fine_tunes_pretrained(config: TrainConfig) -> bool:
    """Whether the run trains a whole network that starts from pretrained weights."""
    return config.pretrained_weights is not None and not config.freeze_backbone


def keep_pretrained_statistics(model: nn.Module) -> None:
    """BatchNorm layers back in eval mode in a model set to train: they normalize with the
    pretrained running statistics, which stay as they were, while their scales and shifts
    still learn (Keras's transfer-learning guide does the same). In train mode, batch
    statistics of the new images replace the ImageNet ones the fitted head saw, and the
    first steps undo it: fine-tuning mobilenet_v2 on Fashion-MNIST (100 per class, 96 px,
    60 s) scored 0.73 on the test images that the fitted head alone scores 0.82 on.
    Re-estimating the statistics on the new images once instead (AdaBN) is worse too: the
    head fitted on the features then scores 0.75 against 0.82 (all 1,000 training images,
    2,000 test images, 2026-12-07)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def discriminative_scales(model: nn.Module, head: str, lr_mult: float) -> dict[str, float]:
    """Each trainable parameter's share of --lr: 1 for the head, 1/sqrt(lr_mult) for the later
    half of the backbone (by depth, in registration order), 1/lr_mult for the earlier half."""
    backbone = [name for name, parameter in model.named_parameters()
                if parameter.requires_grad and not name.startswith(head + ".")]
    half = len(backbone) // 2
    scales = {name: 1 / lr_mult if position < half else 1 / math.sqrt(lr_mult)
              for position, name in enumerate(backbone)}
    scales.update({name: 1.0 for name, _ in model.named_parameters()
                   if name.startswith(head + ".")})
    return scales


def fit_head(
    model: nn.Module, head_name: str, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalizer: nn.Module,
    runtime: RuntimeChoice, console: Console, num_classes: int,
) -> None:
    """Set the head Linear `head_name` of `model` to the logistic regression fitted on the
    features it receives for the (uint8 images, labels) of `batches`."""
    head = model.get_submodule(head_name)
    if not isinstance(head, nn.Linear):
        console.print(f"head not fitted first: {head_name} is not a Linear layer")
        return
    started = time.perf_counter()
    features, labels = _features(model, head, batches, normalizer, runtime)
    if len(np.unique(labels)) < 2:
        console.print("head not fitted first: the sample holds one class")
        return
    fitted = LogisticRegression(C=HEAD_C, max_iter=500).fit(features, labels)
    weight, bias = _full_head(fitted, num_classes, features.shape[1])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    console.print(f"head fitted first on {len(labels):,} images' features "
                  f"(train accuracy {fitted.score(features, labels):.3f}) in "
                  f"{time.perf_counter() - started:.1f}s; now the whole network trains")


def _features(
    model: nn.Module, head: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalizer: nn.Module, runtime: RuntimeChoice,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's float32 inputs and the labels, through the model in eval mode (BatchNorm
    keeps its ImageNet statistics; training mode is restored after)."""
    caught: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: caught.append(args[0].float()))
    training = model.training
    model.eval()
    # The head in train mode (a Linear computes the same in both) keeps --tta hflip's mirror
    # pass off, as feature_cache does: one feature row per image.
    head.train()
    labels = []
    try:
        with torch.no_grad(), runtime.autocast():
            for images, batch_labels in batches:
                images = images.to(runtime.device)
                if runtime.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                model(normalizer(images))
                labels.append(batch_labels.numpy())
    finally:
        handle.remove()
        model.train(training)
    return (torch.cat(caught).flatten(1).cpu().numpy(), np.concatenate(labels))


def _full_head(fitted: LogisticRegression, num_classes: int,
               width: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted coefficients as a [num_classes, width] Linear: a binary fit's single row
    split in two opposite halves (the logit difference is what it predicts); a class absent
    from the sample gets no weights and a low bias."""
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2 and coef.shape[0] == 1:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((num_classes, width), dtype=np.float32)
    bias = np.full(num_classes, float(intercept.min()) - 5.0, dtype=np.float32)
    weight[fitted.classes_] = coef
    bias[fitted.classes_] = intercept
    return weight, bias
