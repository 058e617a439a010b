"""``hw15``: an HW15-format test folder (ML2023 homework 15): ``support/NNNN/`` and ``query/NNNN/``, one image a class.

``omnimeta predict`` writes its submission CSV (no answers needed);
``omnimeta evaluate RUN --benchmark hw15 --option folder=DIR --option
answers=CSV`` scores it against an ``id,class`` answer file. HW15 folders are
drawn from Omniglot's evaluation alphabets, so a model that trained on
evaluation-set characters gets a warning (the ``evaluation_set`` guard of
:mod:`l2l_omniglot.leaks`), not a refusal: which characters a folder holds is
not known.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from l2l_omniglot.benchmarks.base import Benchmark, BenchmarkOptions
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.testsets import read_answers, read_hw15_folder
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.options import option


@dataclass(frozen=True)
class HW15Options(BenchmarkOptions):
    folder: Optional[str] = option(None, "The HW15 test folder (with support/ and query/).")
    answers: Optional[str] = option(None, "An id,class CSV of the right answers (needed to score).")

    def check(self, solver: str) -> None:
        if self.folder is None:
            raise ConfigError(f"{solver} needs its folder: add --option folder=PATH (an HW15 test folder with "
                              f"support/ and query/)")


class HW15Benchmark(Benchmark):
    name = "hw15"
    description = "An HW15-format test folder: predict writes its submission CSV; with answers it is scored."
    about = "the tasks of an HW15 test folder"
    Options = HW15Options
    leak_guard = "evaluation_set"

    def expected(self) -> Optional[dict]:
        """``{id: class}`` from the answer file, or None without one (read before any model is loaded)."""
        return read_answers(self.options.answers) if self.options.answers else None

    def unlabelled(self, config: RunConfig):
        """Every task of the folder, query labels unknown (what ``predict`` answers)."""
        return read_hw15_folder(self.options.folder, config.image_size)

    def check_answers(self, expected: dict, tasks) -> None:
        if len(expected) != tasks.query_y.numel():
            raise ConfigError(f"{self.options.answers} has {len(expected)} answers for {tasks.query_y.numel()} "
                              f"queries; give the answer file of {self.options.folder}")

    def items(self, config: RunConfig, omniglot):
        expected = self.expected()
        if expected is None:
            raise ConfigError(f"hw15 scores a folder against its answers: add --option answers=CSV (or write a "
                              f"submission with `omnimeta predict RUN {self.options.folder} -o FILE`)")
        tasks = self.unlabelled(config)
        self.check_answers(expected, tasks)
        labels = torch.tensor([expected[i] for i in range(tasks.query_y.numel())]).view_as(tasks.query_y)
        return replace(tasks, query_y=labels)
