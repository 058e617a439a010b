"""Solvers: the protocol, the options a solver declares, and the registry that finds them.

The solvers themselves are plugins: each lives in one file (the built-ins in
this folder) and is found through the entry-point group ``omnimeta.solvers``
(:mod:`l2l_omniglot.solvers.registry`), so nothing here imports them.
"""
from __future__ import annotations

from l2l_omniglot.solvers.base import (BaseSolver, EngineSolver, GradientSolver, SharedState, Solver,
                                       SplittableSolver, StepStats, build_optimizer, check_ways)
from l2l_omniglot.solvers.options import OptionSpec, SolverOptions, option
from l2l_omniglot.solvers.registry import (ENTRY_POINT_GROUP, SOLVERS, describe_solvers, make_solver,
                                           register_solver, resolve_config, solver_class, solver_label)
from l2l_omniglot.solvers.space import SearchSpace, TuneRange, linear_range, log_range, one_of, solver_space

__all__ = ["BaseSolver", "ENTRY_POINT_GROUP", "EngineSolver", "GradientSolver", "OptionSpec", "SOLVERS", "SearchSpace",
           "SharedState", "Solver", "SolverOptions", "SplittableSolver", "StepStats", "TuneRange",
           "build_optimizer", "check_ways", "describe_solvers", "linear_range", "log_range", "make_solver", "one_of",
           "option", "register_solver", "resolve_config", "solver_class", "solver_label", "solver_space"]
