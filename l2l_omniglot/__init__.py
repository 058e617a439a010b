"""omnimeta: few-shot classification on Omniglot, built on learn2learn.

The public API, for projects that import omnimeta instead of calling the CLI::

    from l2l_omniglot import load_omniglot, resolve_config, train_and_evaluate
    omniglot = load_omniglot("path/to/omniglot")
    result = train_and_evaluate(resolve_config("fomaml", iterations=300), omniglot)
"""
import os

from l2l_omniglot.threads import prepare_environment

# libgomp reads its wait policy once, when torch loads it: the thread policy's setting must be there first.
prepare_environment()

if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
    # A rank of a distributed run (torchrun, omnimeta run --nproc) reports its failures in one line each;
    # torch's C++ connection-retry logs would bury them. Read when torch loads, so it is set first.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")

from l2l_omniglot.compare import compare_solvers
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data import (TaskBatch, TaskSampler, download_omniglot, fixed_tasks, load_omniglot, make_split,
                               phase_samplers)
from l2l_omniglot.errors import ConfigError, DataError, OmnimetaError
from l2l_omniglot.evaluation import PairedDifference, Score, per_task_accuracy
from l2l_omniglot.models import ConvNet
from l2l_omniglot.solvers import (SOLVERS, BaseSolver, Solver, SolverOptions, make_solver, option, register_solver,
                                  resolve_config)
from l2l_omniglot.launch import RunRequest, run_training
from l2l_omniglot.run_folder import RunFolder
from l2l_omniglot.run_tasks import RunTasks
from l2l_omniglot.training import RunCallbacks, Trainer, resume_training, train_and_evaluate

__version__ = "0.1.0"

__all__ = [
    "BaseSolver", "ConfigError", "ConvNet", "DataError", "OmnimetaError", "PairedDifference",
    "RunCallbacks", "RunConfig", "RunFolder", "RunRequest", "RunTasks", "SOLVERS", "Score", "Solver", "SolverOptions", "TaskBatch",
    "TaskSampler", "Trainer", "download_omniglot", "fixed_tasks", "load_omniglot", "make_solver", "make_split",
    "option", "per_task_accuracy", "phase_samplers", "register_solver", "resolve_config", "resume_training",
    "run_training", "train_and_evaluate", "compare_solvers",
]
