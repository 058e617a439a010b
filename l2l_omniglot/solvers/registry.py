"""Solvers by name: the entry-point group ``omnimeta.solvers``, plus what a script registers in-process.

Built-in solvers and those of other packages are found the same way
(:mod:`l2l_omniglot.plugins`): a package declares ``name = package.module:Class``
under ``omnimeta.solvers`` (omnimeta's own in its ``setup.cfg``), and
:data:`SOLVERS` reads the group with :mod:`importlib.metadata`. A solver's
module is imported only when the solver is used, so a broken plugin costs the
others nothing: using it gives one :class:`~l2l_omniglot.errors.ConfigError`
naming the plugin and its package.

A script or a test can also register a class in-process::

    from l2l_omniglot.solvers import register_solver
    register_solver(CentroidSolver)          # or SOLVERS["centroid"] = CentroidSolver
"""
from __future__ import annotations

from typing import Optional

import torch

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.plugins import IN_PROCESS, PluginEntry, PluginRegistry
from l2l_omniglot.precision import lay_out
from l2l_omniglot.solvers.base import REQUIRED_MEMBERS
from l2l_omniglot.solvers.options import SolverOptions
from l2l_omniglot.solvers.space import solver_space

ENTRY_POINT_GROUP = "omnimeta.solvers"
#: The built-in solvers in the order the docs introduce them; any other solver follows, by name.
BUILTIN_ORDER = ("transfer", "fomaml", "maml", "protonet", "anil")

__all__ = ["BUILTIN_ORDER", "ENTRY_POINT_GROUP", "IN_PROCESS", "SOLVERS", "SolverEntry", "check_solver_class",
           "describe_solvers", "make_solver", "register_solver", "resolve_config", "solver_class", "solver_label",
           "split_overrides"]


def check_solver_class(cls, name: str, package: str) -> None:
    """Refuse a class that does not meet the Solver protocol, naming what it lacks."""
    missing = [member for member in REQUIRED_MEMBERS if not hasattr(cls, member)]
    if missing:
        raise ConfigError(f"solver plugin {name!r} from package {package} lacks {', '.join(missing)} "
                          f"(see docs/solvers.md for the Solver protocol); fix {package}")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, SolverOptions)):
        raise ConfigError(f"solver plugin {name!r} from package {package}: its Options must be a SolverOptions "
                          f"dataclass; fix {package}")
    if cls.name != name:
        raise ConfigError(f"solver plugin {name!r} from package {package} names itself {cls.name!r}; "
                          f"the entry point and the class's name must agree")


class SolverEntry(PluginEntry):
    """A solver's entry point; loading checks the Solver protocol."""

    kind = "solver"

    def check(self, cls: type) -> None:
        check_solver_class(cls, self.name, self.package)


#: Name -> solver class (``SOLVERS[name]`` loads and checks it; iterating imports nothing).
SOLVERS = PluginRegistry(ENTRY_POINT_GROUP, SolverEntry, BUILTIN_ORDER, lister="omnimeta solvers")


def register_solver(cls: type, name: Optional[str] = None) -> type:
    """Register ``cls`` in this process under ``name`` (default ``cls.name``); usable as a decorator."""
    SOLVERS[name or cls.name] = cls
    return cls


def solver_class(name: str) -> type:
    return SOLVERS[name]


def split_overrides(overrides: dict) -> tuple:
    """``(shared, options)``: keys that are shared settings, and the rest (a solver's own options)."""
    shared_names = set(RunConfig.shared_names())
    shared = {k: v for k, v in overrides.items() if k in shared_names}
    options = {k: v for k, v in overrides.items() if k not in shared_names}
    return shared, options


def resolve_config(solver: str, options: Optional[dict] = None, **overrides) -> RunConfig:
    """The config for ``solver``: shared defaults, then the solver's, then non-None ``overrides``.

    ``overrides`` may mix shared settings (``iterations=300``) and the
    solver's own options (``inner_lr=0.1``); ``options`` gives the latter
    explicitly. The solver resolves and checks its options.
    """
    chosen = solver_class(solver)
    shared, own = split_overrides({k: v for k, v in overrides.items() if v is not None})
    unknown_shared = set(chosen.defaults) - set(RunConfig.shared_names())
    if unknown_shared:
        raise ConfigError(f"solver {solver!r} gives defaults for unknown settings {sorted(unknown_shared)}")
    resolved_options = chosen.Options.build({**own, **(options or {})}, solver).to_dict()
    config = RunConfig(**{**chosen.defaults, **shared, "solver": solver, "options": resolved_options})
    return config.validate()


def make_solver(config: RunConfig, num_train_classes: int = 0, device="cpu"):
    """Build the solver that ``config.solver`` names, its ``model`` (where it has one) laid out for ``config.precision``."""
    solver = solver_class(config.solver)(config, num_train_classes, torch.device(device))
    if isinstance(getattr(solver, "model", None), torch.nn.Module):
        lay_out(solver.model, config.precision)
    return solver


def solver_label(config: RunConfig) -> str:
    """How tables name a run: the solver's own ``label(options)`` where it has one, else its name."""
    cls = SOLVERS[config.solver] if config.solver in SOLVERS else None
    label = getattr(cls, "label", None)
    return label(config.options) if callable(label) else config.solver


def describe_solvers() -> list:
    """Every installed solver, for ``omnimeta solvers``: name, package, description, paper, options, space (or error).

    ``space`` is what ``omnimeta tune`` searches by default (:func:`~l2l_omniglot.solvers.space.solver_space`).
    """
    described = []
    for entry in SOLVERS.entries():
        row = {"name": entry.name, "package": entry.package, "target": entry.target}
        try:
            cls = entry.load()
        except ConfigError as error:
            row["error"] = str(error)
        else:
            row.update(description=cls.description, paper=getattr(cls, "paper", ""),
                       defaults=dict(cls.defaults), options=[s.describe() for s in cls.Options.specs()])
            try:
                row["space"] = solver_space(cls).describe()
            except ConfigError as error:  # a plugin's bad range is its own problem: shown, not fatal
                row["space_error"] = str(error)
        described.append(row)
    return described
