"""What an inner-loop engine offers the MAML solvers."""
from __future__ import annotations

from typing import Iterable, Optional, Protocol

import torch

from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.stats import StepStats


class Engine(Protocol):
    """Adapts a model to tasks by ``steps`` SGD steps at ``inner_lr`` on their support sets.

    ``__init__(model, inner_lr, first_order, meta_parameters=None)``;
    ``first_order`` drops the derivatives through the inner steps from the
    meta-gradient, and ``meta_parameters`` (by default every parameter of
    ``model`` that requires a gradient) are the ones the meta-gradient is
    taken for: the inner loop adapts all of the model, but a parameter that is
    not meta-learned (a zero head) gets no ``.grad`` at all.
    """

    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        """Add to the model's ``.grad`` the meta-gradient of the mean query loss over ``tasks``."""

    def adapted_query_logits(self, tasks: TaskBatch, steps: int) -> torch.Tensor:
        """The query logits ``[tasks, ways * queries, ways]`` after adaptation; the model is left unchanged."""


def meta_parameter_list(model: torch.nn.Module, meta_parameters: Optional[Iterable[torch.nn.Parameter]]) -> list:
    """The parameters an engine differentiates the query loss for: ``meta_parameters``, else all trainable ones."""
    if meta_parameters is None:
        return [p for p in model.parameters() if p.requires_grad]
    chosen = list(meta_parameters)
    owned = {id(p) for p in model.parameters()}
    if not all(id(p) in owned for p in chosen):
        raise ValueError("meta_parameters must be parameters of the engine's model")
    return chosen
