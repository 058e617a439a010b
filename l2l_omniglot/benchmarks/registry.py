"""Benchmarks by name: the entry-point group ``omnimeta.benchmarks``, plus what a script registers in-process.

Found exactly like solvers (:mod:`l2l_omniglot.plugins`): omnimeta's own
(``tasks``, ``lake20``, ``hw15``) are entry points in its ``setup.cfg``, another
package declares its own, and a benchmark's module is imported only when it is
used. :func:`make_benchmark` builds one from the values a user gave, checked
before any model or data is loaded.
"""
from __future__ import annotations

from typing import Optional

from l2l_omniglot.benchmarks.base import REQUIRED_MEMBERS, Benchmark, BenchmarkOptions
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.plugins import PluginEntry, PluginRegistry

ENTRY_POINT_GROUP = "omnimeta.benchmarks"
BUILTIN_ORDER = ("tasks", "lake20", "hw15")


class BenchmarkEntry(PluginEntry):
    """A benchmark's entry point; loading checks the Benchmark protocol."""

    kind = "benchmark"

    def check(self, cls: type) -> None:
        where = f"benchmark plugin {self.name!r} from package {self.package}"
        missing = [member for member in REQUIRED_MEMBERS if not hasattr(cls, member)]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)} (see docs/benchmarks.md for the Benchmark "
                              f"protocol); fix {self.package}")
        if not (isinstance(cls.Options, type) and issubclass(cls.Options, BenchmarkOptions)):
            raise ConfigError(f"{where}: its Options must be a BenchmarkOptions dataclass; fix {self.package}")
        if cls.name != self.name:
            raise ConfigError(f"{where} names itself {cls.name!r}; the entry point and the class's name must agree")


#: Name -> benchmark class (``BENCHMARKS[name]`` loads and checks it; iterating imports nothing).
BENCHMARKS = PluginRegistry(ENTRY_POINT_GROUP, BenchmarkEntry, BUILTIN_ORDER, lister="omnimeta benchmarks")


def register_benchmark(cls: type, name: Optional[str] = None) -> type:
    """Register ``cls`` in this process under ``name`` (default ``cls.name``); usable as a decorator."""
    BENCHMARKS[name or cls.name] = cls
    return cls


def make_benchmark(name: str, flags: Optional[dict] = None, options: Optional[dict] = None) -> Benchmark:
    """The benchmark ``name`` with its options: ``flags`` by their flag (``{"shots": 5}`` is ``--shots 5``), ``options``
    by ``--option NAME=VALUE``; a None value is not given.

    A value the benchmark does not take is a ConfigError naming it ("--shots does not apply to lake20 (...)"), as
    is a value out of its range.
    """
    cls = BENCHMARKS[name]
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    options = dict(options or {})
    known = {spec.name for spec in cls.Options.specs()}
    stray = [f"--{key.replace('_', '-')}" for key in flags if key not in known]
    stray += [f"--option {key}" for key in options if key not in known]
    if stray:
        one = len(stray) == 1
        raise ConfigError(f"{' and '.join(stray)} {'does' if one else 'do'} not apply to {name} ({cls.about}); "
                          f"drop {'it' if one else 'them'} (`omnimeta benchmarks` lists each benchmark's options)")
    return cls(cls.Options.build({**flags, **options}, f"benchmark {name}"))


def describe_benchmarks() -> list:
    """Every installed benchmark, for ``omnimeta benchmarks``: name, package, description, options (or error)."""
    described = []
    for entry in BENCHMARKS.entries():
        row = {"name": entry.name, "package": entry.package, "target": entry.target}
        try:
            row.update(entry.load().describe())
        except ConfigError as error:
            row["error"] = str(error)
        described.append(row)
    return described
