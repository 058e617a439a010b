"""Plugins by name: an entry-point group read with :mod:`importlib.metadata`, plus in-process registrations.

Solvers (``omnimeta.solvers``) and benchmarks (``omnimeta.benchmarks``) are
found the same way: a package declares ``name = package.module:Class`` under
the group (omnimeta's own built-ins in its ``setup.cfg``). Listing the names
reads only the installed packages' metadata; a plugin's module is imported
when the plugin is used, so a broken plugin costs the others nothing and
``omnimeta --help`` imports none. Using a broken one gives one
:class:`~l2l_omniglot.errors.ConfigError` naming it and its package.

A registry is specialised by its entry class (what a plugin is called in
messages, and how a loaded class is checked)::

    class BenchmarkEntry(PluginEntry):
        kind = "benchmark"

        def check(self, cls):
            ...                                   # ConfigError when cls breaks the protocol

    BENCHMARKS = PluginRegistry("omnimeta.benchmarks", BenchmarkEntry, builtin_order=("tasks", "lake20"))
"""
from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Optional

from l2l_omniglot.errors import ConfigError, first_line

#: The package named for a plugin registered in-process rather than through an entry point.
IN_PROCESS = "(registered in this process)"


@dataclass
class PluginEntry:
    """Where a plugin comes from: its name, its ``module:Class`` and the package that declares it."""

    name: str
    target: str
    package: str
    loaded: Optional[type] = None
    #: ``package (module:Class)`` of every other package that declares the same name: the name is then refused.
    rivals: tuple = ()

    #: What the plugin is, in messages ("solver plugin 'x' ...").
    kind = "plugin"

    def check(self, cls: type) -> None:
        """Refuse (ConfigError, naming the package) a class that does not meet the plugin's protocol."""

    def load(self) -> type:
        if self.rivals:
            raise ConfigError(name_clash_message(self.kind, self.name, (f"{self.package} ({self.target})",
                                                                        *self.rivals)))
        if self.loaded is None:
            try:
                module_name, _, attribute = self.target.partition(":")
                cls = importlib.import_module(module_name)
                for part in attribute.split("."):
                    cls = getattr(cls, part)
            except Exception as error:  # a plugin's import may fail in any way; it must not take omnimeta down
                raise ConfigError(f"{self.kind} plugin {self.name!r} ({self.target}) from package {self.package} "
                                  f"cannot be loaded ({type(error).__name__}: {first_line(error, 200)}); reinstall "
                                  f"or fix {self.package}") from None
            self.check(cls)
            self.loaded = cls
        return self.loaded


def installed_entry_points(group: str) -> list:
    """``(entry point, name of the package that declares it)`` for each entry point of ``group`` installed in
    this environment; nothing is imported."""
    return [(point, point.dist.name if point.dist is not None else "an unknown package")
            for point in importlib.metadata.entry_points(group=group)]


def name_clash_message(kind: str, name: str, claims: tuple) -> str:
    """One line for a plugin name that more than one package (or registration) declares: a name belongs to one
    class, so none of them is silently preferred."""
    return (f"the {kind} name {name!r} is declared by {len(claims)} packages: {' and '.join(sorted(claims))}; a name "
            f"belongs to one class, so it is refused: uninstall the package that should not provide {name!r} "
            f"(or have it declare another name)")


class PluginRegistry(MutableMapping):
    """Name -> plugin class, over the installed entry points of ``group`` and in-process registrations.

    ``registry[name]`` loads (and checks) the class; iterating lists names,
    built-ins first in ``builtin_order``, without importing anything.
    """

    def __init__(self, group: str, entry_class: type = PluginEntry, builtin_order: tuple = (),
                 lister: str = ""):
        self.group, self.entry_class, self.builtin_order = group, entry_class, tuple(builtin_order)
        self.lister = lister  # the command that lists them, for "unknown" messages
        self._installed: Optional[dict] = None
        self._in_process: dict = {}

    def _entries(self) -> dict:
        if self._installed is None:
            installed = {}
            for point, package in installed_entry_points(self.group):
                entry = installed.setdefault(point.name, self.entry_class(point.name, point.value, package))
                claim = f"{package} ({point.value})"
                if (package, point.value) != (entry.package, entry.target) and claim not in entry.rivals:
                    entry.rivals += (claim,)  # never one of them silently preferred: the name is refused
            self._installed = installed
        return {**self._installed, **self._in_process}

    def entry(self, name: str) -> PluginEntry:
        try:
            return self._entries()[name]
        except KeyError:
            listed = f" (`{self.lister}` lists them)" if self.lister else ""
            raise ConfigError(f"unknown {self.entry_class.kind} {name!r}; use one of {', '.join(self) or 'none'}"
                              f"{listed}") from None

    def entries(self) -> list:
        return sorted(self._entries().values(), key=lambda entry: self.order(entry.name))

    def order(self, name: str) -> tuple:
        """Sort key: the built-ins in their order, then any other plugin by name."""
        known = self.builtin_order
        return (known.index(name) if name in known else len(known), name)

    def __getitem__(self, name: str) -> type:
        return self.entry(name).load()

    def __setitem__(self, name: str, cls: type) -> None:
        target = f"{cls.__module__}:{cls.__qualname__}"
        owner = self._entries().get(name)
        if owner is not None and (owner.loaded is cls or owner.target == target):
            return  # the class that already owns the name
        if owner is not None:
            # A name belongs to one class: a script cannot take over a built-in's, a plugin's or its own earlier one.
            raise ConfigError(name_clash_message(self.entry_class.kind, name, (f"{owner.package} ({owner.target})",
                                                                               f"{IN_PROCESS} ({target})")))
        entry = self.entry_class(name, target, IN_PROCESS, None)
        entry.check(cls)
        entry.loaded = cls
        self._in_process[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._in_process[name]

    def __iter__(self):
        return iter(sorted(self._entries(), key=self.order))

    def __len__(self) -> int:
        return len(self._entries())

    def __contains__(self, name) -> bool:
        return name in self._entries()
