"""Solvers by name: the entry-point group ``omnimeta.solvers``, plus what a script registers in-process.

Built-in solvers and those of other packages are found the same way: a
package declares ``name = package.module:Class`` under ``omnimeta.solvers``
(omnimeta's own in its ``setup.cfg``), and :data:`SOLVERS` reads the group
with :mod:`importlib.metadata`. A solver's module is imported only when the
solver is used, so a broken plugin costs the others nothing: using it gives
one :class:`~l2l_omniglot.errors.ConfigError` naming the plugin and its
package.

A script or a test can also register a class in-process::

    from l2l_omniglot.solvers import register_solver
    register_solver(CentroidSolver)          # or SOLVERS["centroid"] = CentroidSolver
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Optional

import torch

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError, first_line
from l2l_omniglot.solvers.base import REQUIRED_MEMBERS
from l2l_omniglot.solvers.options import SolverOptions

ENTRY_POINT_GROUP = "omnimeta.solvers"
#: The package named for a solver registered in-process rather than through an entry point.
IN_PROCESS = "(registered in this process)"


@dataclass
class SolverEntry:
    """Where a solver comes from: its name, its ``module:Class`` and the package that declares it."""

    name: str
    target: str
    package: str
    loaded: Optional[type] = None
    #: ``package (module:Class)`` of every other package that declares the same name: the name is then refused.
    rivals: tuple = ()

    def load(self) -> type:
        if self.rivals:
            raise ConfigError(name_clash_message(self.name, (f"{self.package} ({self.target})", *self.rivals)))
        if self.loaded is None:
            try:
                module_name, _, attribute = self.target.partition(":")
                module = importlib.import_module(module_name)
                cls = module
                for part in attribute.split("."):
                    cls = getattr(cls, part)
            except Exception as error:  # a plugin's import may fail in any way; it must not take omnimeta down
                raise ConfigError(f"solver plugin {self.name!r} ({self.target}) from package {self.package} "
                                  f"cannot be loaded ({type(error).__name__}: {first_line(error, 200)}); reinstall or fix "
                                  f"{self.package}") from None
            check_solver_class(cls, self.name, self.package)
            self.loaded = cls
        return self.loaded


def name_clash_message(name: str, claims: tuple) -> str:
    """One line for a solver name that more than one package declares: a name belongs to one class."""
    return (f"the solver name {name!r} is declared by {len(claims)} packages: {' and '.join(sorted(claims))}; a name "
            f"belongs to one class, so it is refused: uninstall the package that should not provide {name!r} "
            f"(or have it declare another name)")


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


class SolverRegistry(MutableMapping):
    """Name -> solver class, over the installed entry points and in-process registrations.

    ``SOLVERS[name]`` loads (and checks) the class; iterating lists names
    without importing anything.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._installed: Optional[dict] = None
        self._in_process: dict = {}

    def refresh(self) -> None:
        """Read the entry points again (after a package was installed into this environment)."""
        self._installed = None

    def _entries(self) -> dict:
        if self._installed is None:
            installed = {}
            for point in importlib.metadata.entry_points(group=self.group):
                package = point.dist.name if point.dist is not None else "an unknown package"
                entry = installed.setdefault(point.name, SolverEntry(point.name, point.value, package))
                claim = f"{package} ({point.value})"
                if (package, point.value) != (entry.package, entry.target) and claim not in entry.rivals:
                    entry.rivals += (claim,)  # never one of them silently preferred: the name is refused
            self._installed = installed
        return {**self._installed, **self._in_process}

    def entry(self, name: str) -> SolverEntry:
        try:
            return self._entries()[name]
        except KeyError:
            raise ConfigError(f"unknown solver {name!r}; use one of {', '.join(self) or 'none'} "
                              f"(`omnimeta solvers` lists them)") from None

    def entries(self) -> list:
        return list(self._entries().values())

    def __getitem__(self, name: str) -> type:
        return self.entry(name).load()

    def __setitem__(self, name: str, cls: type) -> None:
        target = f"{cls.__module__}:{cls.__qualname__}"
        owner = self._entries().get(name)
        if owner is not None and (owner.loaded is cls or owner.target == target):
            return  # the class that already owns the name
        if owner is not None:
            # A name belongs to one class: a script cannot take over a built-in's, a plugin's or its own earlier one.
            raise ConfigError(name_clash_message(name, (f"{owner.package} ({owner.target})",
                                                        f"{IN_PROCESS} ({target})")))
        check_solver_class(cls, name, IN_PROCESS)
        self._in_process[name] = SolverEntry(name, target, IN_PROCESS, cls)

    def __delitem__(self, name: str) -> None:
        del self._in_process[name]

    def __iter__(self):
        return iter(sorted(self._entries(), key=_builtin_first))

    def __len__(self) -> int:
        return len(self._entries())

    def __contains__(self, name) -> bool:
        return name in self._entries()


#: The built-in solvers in the order the docs introduce them; any other solver follows, by name.
BUILTIN_ORDER = ("transfer", "fomaml", "maml", "protonet", "anil")


def _builtin_first(name: str) -> tuple:
    return (BUILTIN_ORDER.index(name) if name in BUILTIN_ORDER else len(BUILTIN_ORDER), name)


SOLVERS = SolverRegistry()


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
    """Build the solver that ``config.solver`` names."""
    return solver_class(config.solver)(config, num_train_classes, torch.device(device))


def solver_label(config: RunConfig) -> str:
    """How tables name a run: the solver's own ``label(options)`` where it has one, else its name."""
    cls = SOLVERS[config.solver] if config.solver in SOLVERS else None
    label = getattr(cls, "label", None)
    return label(config.options) if callable(label) else config.solver


def describe_solvers() -> list:
    """Every installed solver, for ``omnimeta solvers``: name, package, description, paper, options (or error)."""
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
        described.append(row)
    return sorted(described, key=lambda row: _builtin_first(row["name"]))
