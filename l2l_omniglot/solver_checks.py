"""What a solver hands back is checked before omnimeta uses it: no score and no saved state from a broken answer.

A solver (built-in or a plugin) returns three things the rest of omnimeta
builds on: the statistics of a training step, the predicted labels of a task's
queries, and its state. Each is checked where it is handed over, and a bad one
stops the command with :class:`SolverError` (one line naming the solver and
the problem, exit status 2), never a traceback and never an accuracy:

* :func:`checked_step_stats`: a loss and an accuracy (a step that returns
  nothing would otherwise fail later, or train on silently);
* :func:`check_predictions`: integer labels ``0 .. ways-1``, one per query;
* :func:`check_plain_state`: tensors and plain data only (what
  ``torch.load(weights_only=True)`` reads back), checked before a state is
  written, so no file is made that cannot be read again;
* :func:`non_finite_entry`: where a state holds a NaN or an infinite weight.
"""
from __future__ import annotations

from typing import Optional

import torch

from l2l_omniglot.errors import OmnimetaError, with_article
from l2l_omniglot.stats import StepStats

#: The scalar types a state may hold besides tensors (what a weights-only load accepts).
PLAIN_SCALARS = (bool, int, float, str, type(None), torch.dtype, torch.Size)


class SolverError(OmnimetaError):
    """A solver handed back something unusable (statistics, predictions, state); nothing is scored or saved from it."""


def solver_name(solver) -> str:
    """How errors name a solver: its registered name (``solver`` may be the name itself)."""
    if isinstance(solver, str):
        return solver
    return str(getattr(solver, "name", "") or type(solver).__name__)


def checked_step_stats(solver, stats) -> StepStats:
    """``stats`` as :class:`StepStats` of two floats, or SolverError when ``meta_train_step`` returned none."""
    try:
        loss, accuracy = float(stats.loss), float(stats.accuracy)
    except (AttributeError, TypeError, ValueError):
        raise SolverError(f"solver {solver_name(solver)}: meta_train_step returned {type(stats).__name__}, not its "
                          f"statistics (a StepStats of loss and accuracy); fix the solver") from None
    return StepStats(loss, accuracy)  # a non-finite loss is the training loop's to report (NumericalError)


def check_predictions(solver, predicted, ways: int, tasks: int, queries: int) -> torch.Tensor:
    """``predicted`` when it is ``[tasks, queries]`` integer labels in ``0 .. ways-1``; else SolverError."""
    expected = (tasks, queries)
    problem = None
    if not isinstance(predicted, torch.Tensor):
        problem = f"{with_article(type(predicted).__name__)}, not a tensor of labels"
    elif predicted.dtype.is_floating_point or predicted.dtype.is_complex or predicted.dtype == torch.bool:
        problem = f"{predicted.dtype} values, not integer labels"
    elif tuple(predicted.shape) != expected:
        problem = f"shape {list(predicted.shape)}, not {list(expected)} (one label per query of each task)"
    elif predicted.numel() and not (0 <= int(predicted.min()) and int(predicted.max()) < ways):
        problem = (f"labels from {int(predicted.min())} to {int(predicted.max())}, outside 0 .. {ways - 1} of a "
                   f"{ways}-way task")
    if problem:
        raise SolverError(f"solver {solver_name(solver)}: predict returned {problem}; no score is given for it: "
                          f"fix the solver")
    return predicted


def _walk(value, where: str):
    """Every leaf of a nested state, with its path (``model.head.weight``, ``optimizer.state[0]``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")
    else:
        yield where, value


def check_plain_state(solver, state) -> dict:
    """``state`` when it holds only tensors and plain data (checked before it is written); else SolverError."""
    if not isinstance(state, dict):
        raise SolverError(f"solver {solver_name(solver)}: state_dict returned {with_article(type(state).__name__)}, not a dict; "
                          f"fix the solver")
    for where, value in _walk(state, ""):
        if not isinstance(value, (torch.Tensor, *PLAIN_SCALARS)):
            raise SolverError(f"solver {solver_name(solver)}: its state_dict holds {with_article(type(value).__name__)} at "
                              f"{where or 'the top'}, not a tensor or plain data, so its state could not be read "
                              f"back; nothing was saved: fix the solver")
    for key in (k for d in _dicts(state) for k in d):
        if not isinstance(key, (str, int)):
            raise SolverError(f"solver {solver_name(solver)}: its state_dict has {with_article(type(key).__name__)} key, not a "
                              f"str or int; nothing was saved: fix the solver")
    return state


def _dicts(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _dicts(item)


def non_finite_entry(state) -> Optional[str]:
    """The path of the first floating-point tensor in ``state`` with a NaN or infinite value, or None."""
    for where, value in _walk(state, ""):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return where
    return None
