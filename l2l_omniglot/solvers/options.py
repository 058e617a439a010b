"""A solver's own options: declared once, in the solver's file, as a dataclass.

Each field is made with :func:`option`, which records its help text, its
allowed values and, where a user knows it by a flag of its own
(``--inner-lr``), that flag. Everything else follows from the declaration:
``omnimeta solvers`` lists the options, ``--option NAME=VALUE`` sets them from
the command line (the string is parsed by the field's type), the flags appear
in ``omnimeta run --help``, and the resolved values are stored in
``config.json`` and in every checkpoint.

Example::

    from dataclasses import dataclass
    from l2l_omniglot.solvers.options import SolverOptions, option

    @dataclass(frozen=True)
    class CentroidOptions(SolverOptions):
        temperature: float = option(10.0, "Softmax temperature of the cosine scores.", minimum=0.0)

    CentroidOptions.build({"temperature": "5"}).temperature   # 5.0
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Optional

from l2l_omniglot.errors import ConfigError, with_article
from l2l_omniglot.solvers.space import TuneRange

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(default, help: str, *, flag: Optional[str] = None, choices: Optional[tuple] = None,
           minimum: Optional[float] = None, maximum: Optional[float] = None, tune: Optional[TuneRange] = None):
    """A dataclass field of a solver's options.

    ``flag`` is a command-line flag kept for this option (``"--inner-lr"``, or
    ``"--zero-head/--learned-head"`` for a boolean pair); several solvers may
    share a flag for options of the same name. ``choices`` limits a string, and
    ``minimum``/``maximum`` bound a number. A default of ``None`` means "decided
    by the solver from its other options" (see :meth:`SolverOptions.resolved`).
    ``tune`` is the range ``omnimeta tune`` searches (:mod:`l2l_omniglot.solvers.space`:
    ``log_range``, ``linear_range``, ``one_of``); without it the option keeps its value in a study.
    """
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "minimum": minimum, "maximum": maximum, "tune": tune})


def new_default(options: type, name: str, default):
    """The option ``name`` of the options class ``options``, with another default and all else the same.

    For a solver that inherits another's options but trains best from other values (FO-MAML's from MAML's).
    """
    declared = options.__dataclass_fields__[name]
    return dataclasses.field(default=default, metadata=declared.metadata)


@dataclass(frozen=True)
class OptionSpec:
    """One declared option, as the command line and ``omnimeta solvers`` show it."""

    name: str
    type: type
    default: object
    help: str
    flag: Optional[str]
    choices: Optional[tuple]
    minimum: Optional[float]
    maximum: Optional[float]
    tune: Optional[TuneRange] = None

    @property
    def type_name(self) -> str:
        return "choice" if self.choices else self.type.__name__

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type_name, "default": self.default, "help": self.help,
                "flag": self.flag, "choices": list(self.choices) if self.choices else None,
                "minimum": self.minimum, "maximum": self.maximum,
                "tune": self.tune.describe() if self.tune is not None else None}

    def parse(self, value, solver: str):
        """``value`` (a string from the command line, or a Python value) as this option's type, checked."""
        flag = f" ({self.flag.split('/')[0]})" if self.flag and self.type is not bool else ""
        where = f"option {self.name}{flag} of {solver}"
        if value is None:
            if self.default is None:
                return None
            raise ConfigError(f"{where} needs a value")
        if isinstance(value, str):
            text = value.strip()
            try:
                if self.type is bool:
                    if text.lower() not in _TRUE | _FALSE:
                        raise ValueError
                    value = text.lower() in _TRUE
                elif self.type is not str:
                    value = self.type(text)
            except ValueError:
                raise ConfigError(f"{where} must be {with_article(self.type_name)} (got {value!r})") from None
        elif self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where} must be {with_article(self.type_name)} (got {value!r})")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, self.choices))} (got {value!r})")
        if self.type in (int, float):
            if self.type is float and not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number (got {value})")
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{where} must be at least {self.minimum:g} (got {value})")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{where} must be at most {self.maximum:g} (got {value})")
        return value


@dataclass(frozen=True)
class SolverOptions:
    """Base of a solver's options dataclass (frozen: options are read, never changed, while training)."""

    #: The command that lists these options, named in "unknown option" messages.
    lister = "omnimeta solvers"

    @classmethod
    def specs(cls) -> list:
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if typing.get_origin(kind) is typing.Union:  # Optional[float]: None means "the solver decides"
                kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
            meta = f.metadata
            specs.append(OptionSpec(f.name, kind, f.default, meta.get("help", ""), meta.get("flag"),
                                    meta.get("choices"), meta.get("minimum"), meta.get("maximum"), meta.get("tune")))
        return specs

    @classmethod
    def build(cls, values: Optional[dict] = None, solver: str = "this solver") -> "SolverOptions":
        """The options from ``values`` (strings or values; missing ones take their defaults), resolved and checked."""
        values = dict(values or {})
        specs = {spec.name: spec for spec in cls.specs()}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            known = ", ".join(specs) or "none"
            raise ConfigError(f"{solver} has no option {', '.join(unknown)}; its options: {known} "
                              f"(see `{cls.lister}`)")
        parsed = {name: specs[name].parse(value, solver) for name, value in values.items()}
        options = cls(**parsed).resolved()
        for spec in specs.values():  # what resolved() filled in is checked like a user's value
            spec.parse(getattr(options, spec.name), solver)
        options.check(solver)
        return options

    def resolved(self) -> "SolverOptions":
        """Fill the options whose default is ``None`` from the others (override; the base has none)."""
        return self

    def check(self, solver: str) -> None:
        """Raise ConfigError for combinations of values that cannot work (override where needed)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
