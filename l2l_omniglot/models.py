"""The standard few-shot backbone: four conv blocks and a linear head.

Each block is a 3x3 convolution with 64 channels, batch norm, ReLU and a 2x2
max-pool (Vinyals et al. 2016; Finn et al. 2017). A 28x28 image leaves the
fourth block as 64 features.

Batch norm has two behaviours, chosen by ``batch_stats``:

* ``batch_stats=True`` (the meta-learners): MAML-style. Every forward pass
  normalises with the statistics of the batch it is given (the support set
  while adapting, the query set while predicting), and no running statistics
  are kept, so nothing one task saw leaks into another. The affine scale and
  shift are ordinary parameters, adapted and meta-learned like the weights.
* ``batch_stats=False`` (whole-class pre-training): ordinary batch norm with
  running statistics, used in ``eval()`` mode at test time, as a standard
  classifier is.

Example::

    import torch
    from l2l_omniglot.models import ConvNet
    model = ConvNet(ways=5)
    logits = model(torch.zeros(10, 1, 28, 28))   # [10, 5]
"""
from __future__ import annotations

import torch
from torch import nn

from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE


def conv_block(in_channels: int, out_channels: int, batch_stats: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=not batch_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class ConvNet(nn.Module):
    """``features`` (4 conv blocks, flattened) followed by ``head`` (linear, ``ways`` outputs)."""

    def __init__(self, ways: int, channels: int = 64, image_size: int = DEFAULT_IMAGE_SIZE,
                 batch_stats: bool = True):
        super().__init__()
        blocks = [conv_block(1 if i == 0 else channels, channels, batch_stats) for i in range(4)]
        self.features = nn.Sequential(*blocks, nn.Flatten())
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = channels * side * side
        self.head = nn.Linear(self.feature_dim, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
