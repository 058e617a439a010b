"""Search spaces: the range of a setting worth tuning, declared by the solver beside the setting itself.

A solver's own option carries its range in :func:`~l2l_omniglot.solvers.options.option`
(``tune=log_range(1e-3, 1.0)``), and the solver class names the shared
settings it wants tuned with theirs (``tuned_settings``)::

    @dataclass(frozen=True)
    class MyOptions(SolverOptions):
        inner_lr: float = option(0.4, "Inner-loop learning rate.", minimum=0.0, tune=log_range(0.01, 1.0))
        mode: str = option("a", "A mode.", choices=("a", "b"), tune=one_of("a", "b"))

    class MySolver(BaseSolver):
        tuned_settings = {"meta_lr": log_range(1e-4, 1e-2), "meta_batch": one_of(4, 8, 16)}

:func:`solver_space` gathers both into one :class:`SearchSpace` and applies
the command line's ``--space NAME=LOW:HIGH`` / ``NAME=a,b,c``; every end and
every choice is checked against the setting's own limits (the option's
``minimum``/``maximum``/``choices``, :meth:`RunConfig.validate` for shared
settings), so a range can never propose a value that a run would refuse.
Optuna draws from the space (:mod:`l2l_omniglot.tune`); nothing here knows
Optuna, so a solver file stays free of it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError

#: The shared settings a solver may tune. The task shape, the split and the evaluation define what is measured,
#: and the iterations are the budget, so those are fixed for a study.
TUNABLE_SHARED = ("meta_lr", "meta_batch", "lr_schedule", "augment")
KINDS = ("log", "linear", "choices")


@dataclass(frozen=True)
class TuneRange:
    """Where a setting is searched: a ``log`` or ``linear`` range from ``low`` to ``high``, or ``choices``."""

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    values: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"a tuning range is one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "choices":
            if not self.values:
                raise ValueError("a choice needs at least one value")
        elif not (isinstance(self.low, (int, float)) and isinstance(self.high, (int, float))
                  and math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"a range needs finite numbers low <= high (got {self.low}, {self.high})")
        elif self.kind == "log" and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")

    def ends(self) -> tuple:
        """The values that bound the range (its ends, or every choice): what the setting's limits must allow."""
        return tuple(self.values) if self.kind == "choices" else (self.low, self.high)

    def text(self) -> str:
        """How ``omnimeta solvers`` shows it (``log 0.001..1``, ``one of running, task``)."""
        if self.kind == "choices":
            return "one of " + ", ".join(map(_plain, self.values))
        return f"{self.kind} {_plain(self.low)}..{_plain(self.high)}"

    def describe(self) -> dict:
        if self.kind == "choices":
            return {"kind": "choices", "values": list(self.values)}
        return {"kind": self.kind, "low": self.low, "high": self.high}


def log_range(low: float, high: float) -> TuneRange:
    """Search from ``low`` to ``high`` on a log scale (learning rates)."""
    return TuneRange("log", low, high)


def linear_range(low: float, high: float) -> TuneRange:
    """Search from ``low`` to ``high`` on a linear scale (whole numbers for an int setting)."""
    return TuneRange("linear", low, high)


def one_of(*values) -> TuneRange:
    """Search among ``values``."""
    return TuneRange("choices", values=tuple(values))


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Dimension:
    """One tuned setting: its name, whether it is shared (``RunConfig``) or the solver's own, its type and range."""

    name: str
    shared: bool
    type: type
    range: TuneRange

    def describe(self) -> dict:
        return {"name": self.name, "shared": self.shared, "type": self.type.__name__, **self.range.describe(),
                "text": self.range.text()}


@dataclass(frozen=True)
class SearchSpace:
    """What a study of one solver searches: its dimensions, in the order the solver declares them."""

    solver: str
    dimensions: tuple

    def names(self) -> list:
        return [dimension.name for dimension in self.dimensions]

    def describe(self) -> list:
        return [dimension.describe() for dimension in self.dimensions]

    def split(self, values: dict) -> tuple:
        """``(shared, options)``: drawn values as shared settings and as the solver's own options."""
        kinds = {dimension.name: dimension.shared for dimension in self.dimensions}
        shared = {name: value for name, value in values.items() if kinds[name]}
        return shared, {name: value for name, value in values.items() if not kinds[name]}


def shared_type(name: str) -> type:
    return {"int": int, "float": float, "str": str}[next(f.type for f in dataclasses.fields(RunConfig)
                                                         if f.name == name)]


def check_range(name: str, kind: type, tune_range: TuneRange, check_value, where: str) -> TuneRange:
    """``tune_range`` with its ends parsed as ``kind`` and each checked by ``check_value`` (raises ConfigError)."""
    if tune_range.kind != "choices" and kind not in (int, float):
        raise ConfigError(f"{where}: {name} is a {kind.__name__}, so it takes choices (NAME=a,b), not a range")
    for value in tune_range.ends():
        check_value(value)
    if tune_range.kind != "choices" and kind is int and not all(float(v).is_integer() for v in tune_range.ends()):
        raise ConfigError(f"{where}: {name} is a whole number, so its range needs whole ends "
                          f"(got {tune_range.text()})")
    return tune_range


def parse_space_text(name: str, text: str, kind: type, declared: Optional[TuneRange], parse_value,
                     where: str) -> TuneRange:
    """``LOW:HIGH`` (the declared scale, else linear) or ``a,b,c`` (one value: that setting fixed) as a range."""
    text = text.strip()
    try:
        if ":" in text and kind not in (int, float):
            raise ConfigError(f"{where}: {name} is a {kind.__name__}, so it takes choices (NAME=a,b), not a range")
        if ":" in text:
            low_text, _, high_text = text.partition(":")
            low, high = parse_value(low_text), parse_value(high_text)
            scale = declared.kind if declared is not None and declared.kind != "choices" else "linear"
            return TuneRange(scale, low, high)
        return TuneRange("choices", values=tuple(parse_value(item) for item in text.split(",")))
    except ValueError as error:
        raise ConfigError(f"{where}={text}: {error}") from None


def solver_space(cls, overrides: Optional[dict] = None) -> SearchSpace:
    """The search space of solver class ``cls``: its options' ``tune`` ranges, its ``tuned_settings``, ``overrides``.

    ``overrides`` (``--space``): name -> ``"LOW:HIGH"`` or ``"a,b,c"`` text, or a :class:`TuneRange`. A name
    that is neither one of the solver's options nor a tunable shared setting, or a range outside the setting's
    own limits, is a one-line ConfigError.
    """
    specs = {spec.name: spec for spec in cls.Options.specs()}
    declared = {name: (False, spec.tune) for name, spec in specs.items() if spec.tune is not None}
    declared.update({name: (True, tune_range) for name, tune_range in getattr(cls, "tuned_settings", {}).items()})
    for name, (shared, _) in declared.items():
        if shared and name not in TUNABLE_SHARED:
            raise ConfigError(f"solver {cls.name!r} wants the shared setting {name!r} tuned, but only "
                              f"{', '.join(TUNABLE_SHARED)} can be; fix its tuned_settings")
    ranges = dict(declared)
    for name, given in (overrides or {}).items():
        where = f"--space {name}"
        if name in specs:
            shared = False
        elif name in TUNABLE_SHARED:
            shared = True
        else:
            raise ConfigError(f"{where}: {cls.name} has no option {name!r} and it is no tunable shared setting; "
                              f"use one of {', '.join([*specs, *TUNABLE_SHARED])} (see `omnimeta solvers`)")
        if not isinstance(given, TuneRange):
            kind = shared_type(name) if shared else specs[name].type
            parse = _shared_parser(name, where) if shared else _option_parser(specs[name], cls.name, where)
            given = parse_space_text(name, given, kind, declared.get(name, (None, None))[1], parse, where)
        ranges[name] = (shared, given)
    dimensions = []
    for name, (shared, tune_range) in ranges.items():
        where = f"--space {name}" if name in (overrides or {}) else f"solver {cls.name}'s range of {name}"
        kind = shared_type(name) if shared else specs[name].type
        check = _shared_parser(name, where) if shared else _option_parser(specs[name], cls.name, where)
        dimensions.append(Dimension(name, shared, kind, check_range(name, kind, tune_range, check, where)))
    return SearchSpace(cls.name, tuple(dimensions))


def _option_parser(spec, solver: str, where: str):
    def parse(value):
        try:
            return spec.parse(value, solver)
        except ConfigError as error:
            raise ConfigError(f"{where} is outside what the option allows: {error}") from None
    return parse


def _shared_parser(name: str, where: str):
    kind = shared_type(name)

    def parse(value):
        try:
            if isinstance(value, str):
                value = kind(value.strip())
            dataclasses.replace(RunConfig(), **{name: value}).validate()
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a {kind.__name__}") from None
        except ConfigError as error:
            raise ConfigError(f"{where} is outside what the setting allows: {error}") from None
        return value
    return parse


__all__ = ["Dimension", "SearchSpace", "TUNABLE_SHARED", "TuneRange", "linear_range", "log_range", "one_of",
           "solver_space"]
