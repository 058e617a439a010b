"""What a training step reports, and accuracy: shared by the engines and the solvers, so it sits below both."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepStats:
    """What one meta-training step reports: mean query loss and accuracy over its tasks."""

    loss: float
    accuracy: float


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=-1) == labels).float().mean().item()
