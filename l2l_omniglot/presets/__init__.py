"""Paper presets: each paper's own protocol for one row of its table, as data with a source for every setting.

A preset is a TOML file (read with :mod:`tomllib`)::

    name = "snell2017-5w1s"
    solver = "protonet"
    paper = "Snell, Swersky and Zemel, Prototypical Networks for Few-shot Learning, NeurIPS 2017"
    row = "Omniglot 5-way 1-shot, Table 1"

    [result]            # the paper's number, as a fraction, and what its plus-minus means
    accuracy = 0.988
    plus_minus = 0.0    # 0 when the paper gives none
    meaning = "no interval given; mean over 1,000 test episodes"
    source = "Table 1"

    [budget]            # how long the paper trained, in meta-training steps of this preset
    iterations = 20000
    unit = "episodes (one per step)"
    source = "..."

    [settings]          # every shared setting and every option of the solver, each with its source
    ways = { value = 5, source = "Table 1" }

    [[deviations]]      # what the paper did that omnimeta does not (not applied; reported)
    what = "test episodes"
    paper = "1,000"
    ours = "the 600 fixed test tasks"

Completeness is checked, not hoped for (:meth:`Preset.check`): a preset sets
every shared setting of :class:`~l2l_omniglot.config.RunConfig` except the
run's mechanics (:data:`RUN_MECHANICS`: seed, device, precision (float32,
the papers' arithmetic), length, how often and on how many tasks to validate) and every option its solver declares, each
with a non-empty source, and no setting the solver lacks.

Presets are found like solvers: a package lists a folder of preset files
under the entry-point group ``omnimeta.presets`` (``name = package.module``;
the files are that module's folder's ``*.toml``). omnimeta's own are in this
folder (``setup.cfg``); a plugin's sit beside its solver. A script may add a
folder in-process with :meth:`PresetRegistry.add_folder`.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError, first_line
from l2l_omniglot.plugins import installed_entry_points
from l2l_omniglot.solvers import SOLVERS, resolve_config

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ENTRY_POINT_GROUP = "omnimeta.presets"
#: Shared settings a preset does not set: the seed, device and precision of each run (a preset's runs compute in
#: float32, the papers' own arithmetic), and omnimeta's own run mechanics (the length follows from the budget;
#: validation is how omnimeta keeps its best state).
RUN_MECHANICS = ("seed", "device", "precision", "iterations", "val_every", "val_tasks")
#: About this many validations over a run, so that its curve shows the trend wherever the budget was cut.
VALIDATIONS_PER_RUN = 20
IN_PROCESS = "(added in this process)"


@dataclass(frozen=True)
class Setting:
    value: object
    source: str


@dataclass(frozen=True)
class Preset:
    """One paper row: the solver, every setting with its source, the paper's number and budget."""

    name: str
    solver: str
    paper: str
    row: str
    accuracy: float
    plus_minus: float
    plus_minus_meaning: str
    accuracy_source: str
    iterations: int
    budget_unit: str
    budget_source: str
    settings: dict
    deviations: tuple = ()
    package: str = "omnimeta"
    path: str = ""
    notes: str = ""

    def iterations_for(self, budget: float) -> int:
        """The meta-training steps that ``budget`` (a fraction of the paper's) runs: at least one."""
        return max(1, round(self.iterations * budget))

    def config(self, budget: float = 1.0, seed: int = 0, device: str = "auto", val_tasks: int = 100) -> RunConfig:
        """The run config of one seed at ``budget`` (fraction of the paper's steps), checked by the solver."""
        check_budget(budget)
        shared_names = set(RunConfig.shared_names())
        shared = {k: s.value for k, s in self.settings.items() if k in shared_names}
        options = {k: s.value for k, s in self.settings.items() if k not in shared_names}
        iterations = self.iterations_for(budget)
        return resolve_config(self.solver, options=options, **shared, iterations=iterations,
                              val_every=max(1, iterations // VALIDATIONS_PER_RUN), val_tasks=val_tasks, seed=seed,
                              device=device)

    def check(self) -> "Preset":
        """Refuse a preset that misses a setting, sets one its solver lacks, or gives one no source."""
        where = f"preset {self.name} ({self.path or self.package})"
        if self.solver not in SOLVERS:
            raise ConfigError(f"{where} names solver {self.solver!r}, which is not installed; install it or fix "
                              f"the preset")
        shared = set(RunConfig.shared_names()) - set(RUN_MECHANICS)
        options = {spec.name for spec in SOLVERS[self.solver].Options.specs()}
        unknown = sorted(set(self.settings) - shared - options)
        missing = sorted((shared | options) - set(self.settings))
        unsourced = sorted(k for k, s in self.settings.items() if not str(s.source).strip())
        for problem, names in (("sets what its solver lacks", unknown), ("lacks", missing),
                               ("gives no source for", unsourced)):
            if names:
                raise ConfigError(f"{where} {problem}: {', '.join(names)}; every shared setting (but "
                                  f"{', '.join(RUN_MECHANICS)}) and every {self.solver} option needs a value and "
                                  f"a source")
        for name, text in (("result.source", self.accuracy_source), ("result.meaning", self.plus_minus_meaning),
                           ("budget.source", self.budget_source)):
            if not text.strip():
                raise ConfigError(f"{where} gives no {name}")
        if not 0 < self.accuracy <= 1 or self.iterations < 1:
            raise ConfigError(f"{where}: result.accuracy must be a fraction in (0, 1] and budget.iterations >= 1")
        self.config(1.0)  # the solver checks the values (ranges, combinations)
        return self

    def describe(self) -> dict:
        """Plain data for ``omnimeta reproduce --list --json`` and for reproduce.json."""
        return {"name": self.name, "solver": self.solver, "paper": self.paper, "row": self.row,
                "package": self.package,
                "paper_accuracy": self.accuracy, "paper_plus_minus": self.plus_minus,
                "paper_plus_minus_meaning": self.plus_minus_meaning, "paper_accuracy_source": self.accuracy_source,
                "paper_iterations": self.iterations, "budget_unit": self.budget_unit,
                "budget_source": self.budget_source,
                "settings": {k: {"value": s.value, "source": s.source} for k, s in self.settings.items()},
                "deviations": [dict(d) for d in self.deviations], "notes": self.notes}


def check_budget(budget: float) -> None:
    if not 0 < budget <= 1:
        raise ConfigError(f"--budget is a fraction of the paper's budget in (0, 1] (got {budget})")


def parse_preset(text: str, path: str, package: str) -> Preset:
    """A :class:`Preset` from a TOML file's text; a malformed file is one ConfigError naming it."""
    try:
        data = tomllib.loads(text)
        settings = {k: Setting(v["value"], v["source"]) for k, v in data["settings"].items()}
        result, budget = data["result"], data["budget"]
        deviations = tuple({"what": d["what"], "paper": d["paper"], "ours": d["ours"]}
                           for d in data.get("deviations", []))
        return Preset(data["name"], data["solver"], data["paper"], data["row"], float(result["accuracy"]),
                      float(result["plus_minus"]), result["meaning"], result["source"], int(budget["iterations"]),
                      budget["unit"], budget["source"], settings, deviations, package, path, data.get("notes", ""))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"preset file {path} from {package} is malformed ({type(error).__name__}: "
                          f"{first_line(error, 160)}); fix it (docs/reproduce.md describes the format)") from None


@dataclass
class PresetRegistry:
    """Name -> :class:`Preset`, over the folders the entry points name and the folders added in-process."""

    group: str = ENTRY_POINT_GROUP
    _added: list = field(default_factory=list)

    def add_folder(self, folder, package: str = IN_PROCESS) -> None:
        self._added.append((Path(folder), package))

    def _folders(self) -> list:
        folders = []
        for point, package in installed_entry_points(self.group):
            try:
                folders.append((importlib.resources.files(point.value), package))
            except (ImportError, TypeError) as error:
                raise ConfigError(f"preset entry point {point.name!r} ({point.value}) from package {package} "
                                  f"cannot be loaded ({first_line(error, 120)}); reinstall or fix {package}") from None
        return folders + self._added

    def all(self) -> dict:
        """Every preset, by name (omnimeta's first, then the others by name); a name given twice is refused."""
        found = {}
        for folder, package in self._folders():
            for entry in sorted(folder.iterdir(), key=lambda e: e.name):
                if not entry.name.endswith(".toml"):
                    continue
                preset = parse_preset(entry.read_text(), f"{package}:{entry.name}", package)
                if preset.name in found:
                    raise ConfigError(f"preset {preset.name} is defined twice ({found[preset.name].path} and "
                                      f"{preset.path}); rename one")
                found[preset.name] = preset
        return dict(sorted(found.items(), key=lambda item: (item[1].package != "omnimeta", item[0])))

    def __getitem__(self, name: str) -> Preset:
        presets = self.all()
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; use one of {', '.join(presets) or 'none'} "
                              f"(`omnimeta reproduce --list`)")
        return presets[name].check()

    def __iter__(self):
        return iter(self.all())


PRESETS = PresetRegistry()


def get_preset(name: str) -> Preset:
    """The preset ``name``, checked (:meth:`Preset.check`)."""
    return PRESETS[name]


__all__ = ["ENTRY_POINT_GROUP", "PRESETS", "Preset", "PresetRegistry", "RUN_MECHANICS", "Setting", "get_preset",
           "parse_preset"]
