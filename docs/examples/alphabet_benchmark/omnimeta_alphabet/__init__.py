"""One Omniglot alphabet's characters as fixed N-way tasks: an example benchmark plugin for omnimeta.

The tasks have the run's shape (ways, shots, queries) unless ``--ways`` or
``--shots`` ask for another; they are drawn with omnimeta's own task sampler
from a fixed stream, so every model is scored on the same tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from l2l_omniglot.benchmarks import Benchmark, BenchmarkOptions
from l2l_omniglot.data.tasks import TEST_STREAM, CharacterImages, TaskSampler, fixed_tasks
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import option


@dataclass(frozen=True)
class AlphabetOptions(BenchmarkOptions):
    alphabet: str = option("Tengwar", "The alphabet, by its folder name (Tengwar, or evaluation/Tengwar).")
    tasks: int = option(100, "Fixed tasks to score.", minimum=1, maximum=20000)
    ways: Optional[int] = option(None, "Classes per task (--ways). Default: the run's.", minimum=2)
    shots: Optional[int] = option(None, "Support images per class (--shots). Default: the run's.", minimum=1)


class AlphabetBenchmark(Benchmark):
    name = "alphabet"
    description = "Fixed N-way tasks of one Omniglot alphabet's characters (an example plugin)."
    about = "fixed tasks of one alphabet's characters"
    Options = AlphabetOptions
    leak_guard = "characters"  # a model that saw any of them is refused

    def characters(self, config, omniglot) -> frozenset:
        wanted = self.options.alphabet
        found = [i for i, name in enumerate(omniglot.alphabet_of) if name == wanted or name.split("/", 1)[1] == wanted]
        if not found:
            names = sorted({name.split("/", 1)[1] for name in omniglot.alphabet_of})
            raise ConfigError(f"no alphabet {wanted!r} in the data; use one of {', '.join(names)}")
        return frozenset(found)

    def items(self, config, omniglot):
        images, labels = omniglot.all_images()
        characters = sorted(self.characters(config, omniglot))
        sampler = TaskSampler(CharacterImages(images, labels, characters), self.options.ways or config.ways,
                              self.options.shots or config.shots, config.queries,
                              phase=f"alphabet {self.options.alphabet}")
        return fixed_tasks(sampler, self.options.tasks, TEST_STREAM)

    def score(self, per_task, items, config) -> dict:
        return {"alphabet": self.options.alphabet, "ways": items.ways, "shots": items.shots,
                **super().score(per_task, items, config)}
