"""Solvers by name. Adding one: a new file here, and one line in ``SOLVERS``."""
from __future__ import annotations

import torch

from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.base import Solver, StepStats
from l2l_omniglot.solvers.fomaml import FOMAMLSolver
from l2l_omniglot.solvers.maml import MAMLSolver
from l2l_omniglot.solvers.transfer import TransferSolver

SOLVERS = {
    "transfer": TransferSolver,
    "fomaml": FOMAMLSolver,
    "maml": MAMLSolver,
}


def solver_class(name: str) -> type:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; use one of {', '.join(SOLVERS)}") from None


def make_solver(config, num_train_classes: int = 0, device="cpu") -> Solver:
    """Build the solver that ``config.solver`` names."""
    return solver_class(config.solver)(config, num_train_classes, torch.device(device))


__all__ = ["SOLVERS", "Solver", "StepStats", "make_solver", "solver_class"]
