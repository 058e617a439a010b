"""``tasks``: the fixed test tasks of a run's own split, of its shape or another way and shot.

The same tasks the run was tested on when it finished (the fixed test stream
of :class:`~l2l_omniglot.run_tasks.RunTasks`), so ``evaluate`` repeats the
run's test accuracy exactly; ``--ways``, ``--shots`` and ``--eval-tasks`` ask
for other fixed tasks of the same characters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from l2l_omniglot.benchmarks.base import Benchmark, BenchmarkOptions
from l2l_omniglot.config import MAX_EVALUATION_TASKS, RunConfig
from l2l_omniglot.data.splits import make_split
from l2l_omniglot.evaluation import Score
from l2l_omniglot.run_tasks import RunTasks
from l2l_omniglot.solvers.options import option


@dataclass(frozen=True)
class TaskShape(BenchmarkOptions):
    ways: Optional[int] = option(None, "Classes per test task (--ways); another way than the run's only for solvers "
                                       "that allow it. Default: the run's.", minimum=2)
    shots: Optional[int] = option(None, "Support images per class (--shots). Default: the run's.", minimum=1)
    eval_tasks: Optional[int] = option(None, "Fixed test tasks (--eval-tasks). Default: the run's.", minimum=1,
                                       maximum=MAX_EVALUATION_TASKS)


class TasksBenchmark(Benchmark):
    name = "tasks"
    description = "The fixed test tasks of the run's own split (the run's shape, or --ways/--shots/--eval-tasks)."
    about = "the fixed test tasks of the run's split"
    Options = TaskShape
    leak_guard = "characters"

    def shape(self, config: RunConfig) -> RunConfig:
        """The run's config with the asked test-task shape."""
        asked = self.options
        return RunConfig.from_dict({**config.to_dict(), "ways": asked.ways or config.ways,
                                    "shots": asked.shots or config.shots,
                                    "eval_tasks": asked.eval_tasks or config.eval_tasks}).validate()

    def characters(self, config: RunConfig, omniglot) -> frozenset:
        return frozenset(make_split(config.split, omniglot).test)

    def items(self, config: RunConfig, omniglot):
        return RunTasks.build(self.shape(config), omniglot, phases=("test",)).test_tasks

    def score(self, per_task, items, config: RunConfig) -> dict:
        shape, score = self.shape(config), Score.of(per_task)
        return {"ways": shape.ways, "shots": shape.shots, "split": shape.split, "test_accuracy": score.accuracy,
                "test_ci95": score.ci95, "test_tasks": score.tasks}

    @classmethod
    def show(cls, report: dict, source: str) -> list:
        return [f"{report['label']} on {report['test_tasks']} fixed {report['ways']}-way {report['shots']}-shot test "
                f"tasks: [bold]{report['test_accuracy']:.4f} ± {report['test_ci95']:.4f}[/bold] (95% CI)"]
