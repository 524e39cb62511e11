"""The DenseNet module every densenet of the registry is (densenet.py builds and registers
them): torchvision's class, with the changes below. A module of its own so that importing
the registry does not import torchvision (~2 s); densenet.py imports this when it builds one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from imgcls.models.dense_train import train_features


class DenseNet(models.DenseNet):
    """torchvision's DenseNet with its final ReLU as a module, so replace_activations reaches
    it, an optional dropout before the classifier (neither has weights: keys are unchanged),
    and a faster training forward (dense_train.train_features)."""

    def __init__(self, *, dropout: float, **config: object) -> None:
        super().__init__(**config)
        self.final_activation: nn.Module = nn.ReLU(inplace=True)
        self.head_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        features = train_features(self.features, x) if self.training else self.features(x)
        out = self.final_activation(features)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(self.head_dropout(out))
