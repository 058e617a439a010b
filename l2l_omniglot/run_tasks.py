"""The tasks of one run: its meta-training samplers and its fixed validation and test task lists.

A run meta-trains on a seeded stream of tasks and is scored on two fixed
lists, drawn once from their own streams (``VALIDATION_STREAM``,
``TEST_STREAM``) so that every run of the same shape and split meets the same
tasks. :class:`RunTasks` builds what a config asks for, for the phases a
caller needs: the training loop needs all three (or no test tasks at all,
see :class:`~l2l_omniglot.training.Trainer`'s ``test``), and scoring a saved
run needs only the test list.

(An evaluation *benchmark*, such as Lake's 20-way runs, is something else: a
plugin that scores a trained model; see :mod:`l2l_omniglot.benchmarks`.)
"""
from __future__ import annotations

from dataclasses import dataclass

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.splits import make_split
from l2l_omniglot.data.tasks import TEST_STREAM, VALIDATION_STREAM, fixed_tasks, phase_samplers
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS

PHASES = ("train", "val", "test")


@dataclass
class RunTasks:
    """The task samplers (by phase) and the fixed validation and test tasks (``None`` when not built)."""

    samplers: dict
    val_tasks: object
    test_tasks: object

    @staticmethod
    def build(config: RunConfig, omniglot, phases=PHASES) -> "RunTasks":
        """Samplers for ``phases`` only: validation and test give the run's shape; training the solver's.

        A phase left out is never built (so a run without ``"test"`` draws
        no test task). A solver with a ``train_task_shape(config)`` hook (see
        :class:`~l2l_omniglot.solvers.base.Solver`) meta-trains on tasks of the
        shape it returns; every other solver on the run's own shape.
        """
        split = make_split(config.split, omniglot)
        run_shape = (config.ways, config.shots, config.queries)
        hook = getattr(SOLVERS[config.solver], "train_task_shape", None) if "train" in phases else None
        train_shape = tuple(hook(config)) if callable(hook) else run_shape
        samplers = {}
        if "train" in phases and train_shape != run_shape:
            try:
                samplers = phase_samplers(omniglot, split, *train_shape, config.augment, ("train",))
            except ConfigError as error:
                ways, shots, queries = train_shape
                raise ConfigError(f"{config.solver} meta-trains on {ways}-way {shots}-shot tasks with {queries} "
                                  f"queries per class (its train_task_shape), which the {config.split} split "
                                  f"cannot give ({error}); change that solver's options") from None
            phases = tuple(phase for phase in phases if phase != "train")
        samplers.update(phase_samplers(omniglot, split, *run_shape, config.augment, phases) if phases else {})
        val = fixed_tasks(samplers["val"], config.val_tasks, VALIDATION_STREAM) if "val" in samplers else None
        test = fixed_tasks(samplers["test"], config.eval_tasks, TEST_STREAM) if "test" in samplers else None
        return RunTasks(samplers, val, test)

    @property
    def num_train_classes(self) -> int:
        return self.samplers["train"].dataset.num_classes
