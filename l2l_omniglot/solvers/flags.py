"""From command-line values to each solver's options: the kept flags (``--inner-lr``) and ``--option NAME=VALUE``.

A solver declares its options (:mod:`l2l_omniglot.solvers.options`); some keep
a flag of their own, which several solvers may share for options of the same
name. This module turns what a user typed into one resolved
:class:`~l2l_omniglot.config.RunConfig` per solver, so that the CLI and a
script that takes the same strings agree::

    from l2l_omniglot.solvers.flags import configs_from_options
    (config,) = configs_from_options(["fomaml"], {"iterations": 10, "inner_lr": 0.2, "option_values": ()})

Every function here loads the solvers it looks at (imports their modules):
call them when a command needs the solvers, never at import time.
"""
from __future__ import annotations

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.registry import SOLVERS, resolve_config


def solver_flags() -> dict:
    """Flags that solvers keep for their options: click parameter name -> ``{"spec": ..., "solvers": {name: spec}}``.

    A solver that cannot be loaded is left out (it is reported when it is used, not in everyone's ``--help``).
    """
    flags = {}
    for name in SOLVERS:
        try:
            specs = SOLVERS[name].Options.specs()
        except ConfigError:
            continue
        for spec in specs:
            if spec.flag:
                declaration = spec.flag.split("/")[0].lstrip("-").replace("-", "_")
                entry = flags.setdefault(declaration, {"spec": spec, "solvers": {}})
                entry["solvers"][name] = spec
    return flags


def flag_help(entry: dict) -> str:
    """The help of a kept flag: what it does, which solvers take it, and each one's default."""
    spec, users = entry["spec"], entry["solvers"]
    defaults = ", ".join(f"{name} {'auto' if s.default is None else shown(s.default)}" for name, s in users.items())
    return f"{spec.help} Solver option {spec.name} of {', '.join(users)} [default: {defaults}]."


def shown(value) -> str:
    """A default as help text shows it: a float to 4 significant digits (a tuned one has 16)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def shared_default_help(key: str) -> str:
    """`` [default: V; solver W ...]`` for a shared setting, from RunConfig and the solvers' own defaults."""
    own = []
    for name in SOLVERS:
        try:
            defaults = SOLVERS[name].defaults
        except ConfigError:
            continue
        if key in defaults:
            own.append(f"{name} {shown(defaults[key])}")
    return f" [default: {getattr(RunConfig(), key)}" + ("; " + ", ".join(own) if own else "") + "]"


def parse_option_values(values, lister: str = "omnimeta solvers") -> dict:
    """``--option NAME=VALUE`` (or ``SOLVER.NAME=VALUE``) as ``{(solver or None, name): value}``; ``lister`` is the
    command a malformed one is pointed to."""
    parsed = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"--option {item!r} is not NAME=VALUE; write it as NAME=VALUE (`{lister}` lists the "
                              f"options)")
        solver, dot, option = name.strip().rpartition(".")
        key = (solver if dot else None, option)
        if key in parsed:
            raise ConfigError(f"--option {name.strip()} is given twice ({name.strip()}={parsed[key]} and {item}); give "
                              f"each option once")
        parsed[key] = value
    return parsed


def solver_options(solvers: list, flag_values: dict, option_values: dict, flags: dict = None) -> dict:
    """Each solver's own options from the kept flags and ``--option``; a value no solver takes is an error."""
    flags = solver_flags() if flags is None else flags
    chosen = {name: {} for name in solvers}
    for param, value in flag_values.items():
        takers = [name for name in solvers if name in flags[param]["solvers"]]
        if not takers:
            raise ConfigError(f"{flags[param]['spec'].flag} does not apply to {', '.join(solvers)}; drop it "
                              f"(`omnimeta solvers` lists each solver's options)")
        for name in takers:
            chosen[name][flags[param]["solvers"][name].name] = value
    for (target, option), value in option_values.items():
        if target is not None and target not in chosen:
            raise ConfigError(f"--option {target}.{option}: {target} is not among the solvers here "
                              f"({', '.join(solvers)})")
        takers = [target] if target else [n for n in solvers if option in {s.name for s in SOLVERS[n].Options.specs()}]
        if not takers:
            takers = solvers  # let the solver name what it does accept
        for name in takers:
            if option in chosen[name]:  # a kept flag, or NAME= and SOLVER.NAME=, for the same setting
                raise ConfigError(f"the option {option} of {name} is given twice (a flag and --option, or NAME= "
                                  f"and {name}.NAME=); give it once")
            chosen[name][option] = value
    return chosen


def given_settings(solvers: list, training: dict) -> tuple:
    """``(shared, {solver: options})``: the shared settings and each solver's own options the user typed.

    ``training`` maps shared settings (``iterations``), kept flags
    (``inner_lr``) and ``option_values`` (the ``--option`` strings) to their
    values, None where not given; it is not changed. Values not given are left out.
    """
    flags = solver_flags()
    shared = {name: training[name] for name in RunConfig.shared_names() if training.get(name) is not None}
    option_values = parse_option_values(training.get("option_values") or ())
    flag_values = {param: training[param] for param in flags if training.get(param) is not None}
    unknown = [param for param in training if param not in flags and param not in RunConfig.shared_names()
               and param != "option_values" and training[param] is not None]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)} is not a shared setting or a solver's flag; leave it out")
    return shared, solver_options(solvers, flag_values, option_values, flags)


def configs_from_options(solvers: list, training: dict, params: tuple = ({}, {})) -> list:
    """One resolved RunConfig per solver from parsed command-line values (see :func:`given_settings`).

    ``params``: ``(shared, options)`` from ``--params`` (a study's best.json), below what the user typed.
    """
    shared, own = given_settings(solvers, training)
    return [resolve_config(name, options={**params[1], **own[name]}, **{**params[0], **shared}) for name in solvers]


def given_options(training: dict) -> list:
    """The training options a user typed, as flags (to refuse them where they would be ignored)."""
    given = [name for name in training if name != "option_values" and training[name] is not None]
    given += ["option"] if training.get("option_values") else []
    return ["--" + name.replace("_", "-") for name in given]
