"""Scores over fixed tasks: accuracy per task, its mean and 95% confidence interval.

The interval is the normal approximation over tasks, ``1.96 * sd / sqrt(n)``,
as reported in the few-shot literature. Two solvers scored on the same tasks
are compared by the paired difference of their per-task accuracies.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch

from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.solver_checks import check_predictions

Z_95 = 1.959964
#: Human error on Lake's 20-way one-shot runs (Lake et al. 2015).
HUMAN_LAKE20_ERROR = 0.045


@dataclass
class Score:
    accuracy: float
    ci95: float
    tasks: int

    @staticmethod
    def of(per_task: torch.Tensor) -> "Score":
        per_task = per_task.double()
        n = per_task.numel()
        spread = per_task.std(unbiased=True).item() if n > 1 else 0.0
        return Score(per_task.mean().item(), Z_95 * spread / math.sqrt(n), n)


def t_half_width95(values: torch.Tensor) -> float:
    """The half-width of the 95% interval of the mean of a few ``values`` by Student's t (``n - 1`` degrees of
    freedom): for Lake's 20 runs, where the normal approximation over thousands of tasks does not hold."""
    values = values.double()
    n = values.numel()
    if n < 2:
        return float("nan")
    import scipy.stats  # here, not with the module: 0.45 s of every command's start, and only lake20 needs it

    return float(scipy.stats.t.ppf(0.975, n - 1)) * values.std(unbiased=True).item() / math.sqrt(n)


def no_progress(description: str, total: Optional[int]) -> ContextManager[Callable[[int], None]]:
    """The progress factory that shows nothing. Library calls that take ``progress`` use it as
    ``with progress(description, total) as advance: advance(n)``; the CLI passes rich bars of the same shape."""
    return contextlib.nullcontext(lambda done: None)


def per_task_accuracy(solver, tasks: TaskBatch, chunk: int = 50,
                      progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """The query accuracy of ``solver`` on each task, in task order.

    The solver sees each task without its query labels, and its answer is
    checked (:func:`~l2l_omniglot.solver_checks.check_predictions`) before it is scored.
    """
    scores = []
    for part in tasks.chunks(chunk):
        predicted = predict_labels(solver, part)
        scores.append((predicted == part.query_y.cpu()).double().mean(dim=1))
        if progress is not None:
            progress(len(part))
    return torch.cat(scores)


def predict_labels(solver, tasks: TaskBatch) -> torch.Tensor:
    """``solver.predict`` on ``tasks`` without their query labels; its answer checked, on the CPU."""
    predicted = solver.predict(tasks.without_query_labels())
    return check_predictions(solver, predicted, tasks.ways, len(tasks), tasks.ways * tasks.queries).cpu()


@dataclass
class PairedDifference:
    """``mean`` of (a - b) over the same tasks, with its 95% interval; significant when it excludes 0."""

    mean: float
    ci95: float

    @property
    def significant(self) -> bool:
        return abs(self.mean) > self.ci95

    @staticmethod
    def of(a: torch.Tensor, b: torch.Tensor) -> "PairedDifference":
        score = Score.of(a.double() - b.double())
        return PairedDifference(score.accuracy, score.ci95)
