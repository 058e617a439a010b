"""The Benchmark protocol: a named set of test tasks that a saved model is scored on.

A benchmark says four things, each a small member:

* **what it takes** -- :attr:`Benchmark.Options`, declared like a solver's
  options (:func:`~l2l_omniglot.solvers.options.option`); ``omnimeta evaluate``
  fills ``ways``, ``shots`` and ``eval_tasks`` from its flags of those names
  and any other option from ``--option NAME=VALUE``;
* **which leak guard applies** -- :attr:`Benchmark.leak_guard` names one of
  :data:`l2l_omniglot.leaks.LEAK_GUARDS` (``characters`` refuses a model that
  saw any of :meth:`Benchmark.characters`);
* **how it builds its items** -- :meth:`Benchmark.items` gives one
  :class:`~l2l_omniglot.data.tasks.TaskBatch` for a model's run config (what it
  needs from the model: its image size, and for some its ways and shots);
* **how it scores and shows a result** -- :meth:`Benchmark.score` turns the
  per-task accuracies into the report's numbers and :meth:`Benchmark.show`
  into the lines ``omnimeta evaluate`` prints.

A package adds one with an entry point (see ``docs/benchmarks.md``)::

    [project.entry-points."omnimeta.benchmarks"]
    alphabet = "omnimeta_alphabet:AlphabetBenchmark"
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.evaluation import Score
from l2l_omniglot.solvers.options import SolverOptions

#: What every benchmark class has (checked when it is loaded).
REQUIRED_MEMBERS = ("name", "description", "about", "Options", "leak_guard", "characters", "items", "score", "show",
                    "describe")


@dataclass(frozen=True)
class BenchmarkOptions(SolverOptions):
    """Base of a benchmark's options: declared, parsed and checked exactly like a solver's."""

    lister = "omnimeta benchmarks"


class Benchmark:
    """Base class of a benchmark; the defaults score a plain list of tasks by their mean accuracy.

    A subclass sets :attr:`name` (its entry point's name), :attr:`description`,
    :attr:`about` (what its items are, in a few words), :attr:`Options` when it
    takes any, :attr:`leak_guard`, and overrides :meth:`items`; the other
    members have working defaults.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: What its items are, in a few words ("20 fixed 20-way one-shot runs"); shown by `omnimeta benchmarks`.
    about: ClassVar[str] = ""
    Options: ClassVar[type] = BenchmarkOptions
    #: A key of ``l2l_omniglot.leaks.LEAK_GUARDS``: how a model that saw the items' characters is treated.
    leak_guard: ClassVar[str] = "characters"

    def __init__(self, options: Optional[BenchmarkOptions] = None):
        self.options = options if options is not None else self.Options.build({}, f"benchmark {self.name}")

    def characters(self, config: RunConfig, omniglot) -> frozenset:
        """The global ids of the Omniglot characters the items draw for a model of ``config`` (for the
        ``characters`` guard)."""
        return frozenset()

    def items(self, config: RunConfig, omniglot) -> TaskBatch:
        """The tasks a model of ``config`` is scored on, in a fixed order."""
        raise NotImplementedError

    def score(self, per_task: torch.Tensor, items: TaskBatch, config: RunConfig) -> dict:
        """The report's numbers from the accuracy of each item (default: their mean and 95% interval)."""
        score = Score.of(per_task)
        return {"test_accuracy": score.accuracy, "test_ci95": score.ci95, "test_tasks": score.tasks}

    @classmethod
    def show(cls, report: dict, source: str) -> list:
        """What ``omnimeta evaluate`` prints for the run in ``source``: rich renderables (markup text, tables)."""
        return [f"{report['label']} on {report['test_tasks']} tasks of {cls.name}: [bold]"
                f"{report['test_accuracy']:.4f} ± {report['test_ci95']:.4f}[/bold] (95% CI)"]

    @classmethod
    def describe(cls) -> dict:
        return {"description": cls.description, "about": cls.about, "leak_guard": cls.leak_guard,
                "options": [spec.describe() for spec in cls.Options.specs()]}
