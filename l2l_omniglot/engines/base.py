"""What an inner-loop engine offers the MAML solvers."""
from __future__ import annotations

from typing import Protocol

import torch

from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.stats import StepStats


class Engine(Protocol):
    """Adapts a model to tasks by ``steps`` SGD steps at ``inner_lr`` on their support sets.

    ``__init__(model, inner_lr, first_order)``; ``first_order`` drops the
    derivatives through the inner steps from the meta-gradient.
    """

    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        """Add to the model's ``.grad`` the meta-gradient of the mean query loss over ``tasks``."""

    def adapted_query_logits(self, tasks: TaskBatch, steps: int) -> torch.Tensor:
        """The query logits ``[tasks, ways * queries, ways]`` after adaptation; the model is left unchanged."""
