"""Scoring saved runs: on the fixed test tasks, on Lake's 20-way runs, and on an HW15 test folder.

What ``omnimeta evaluate`` and ``omnimeta predict`` do, as library calls, so a
script gets the same numbers::

    from l2l_omniglot.scoring import evaluate_run
    report = evaluate_run("runs/maml", omniglot, benchmark="lake20")
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from l2l_omniglot.checkpoint import load_solver
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import resolve_root
from l2l_omniglot.data.testsets import read_answers, read_hw15_folder, read_lake_runs, write_submission
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.evaluation import HUMAN_LAKE20_ERROR, Score, per_task_accuracy
from l2l_omniglot.solvers import solver_label
from l2l_omniglot.training import Benchmark

BENCHMARKS = ("tasks", "lake20")


def _no_progress(done: int) -> None:
    return None


def evaluate_run(run_dir: Path, omniglot, benchmark: str = "tasks", eval_tasks: Optional[int] = None,
                 shots: Optional[int] = None, device: str = "cpu",
                 progress: Callable[[int], None] = _no_progress) -> dict:
    """Score a run's best checkpoint on its fixed test tasks (``tasks``) or on Lake's 20 runs (``lake20``).

    Everything that can fail on the user's input (the checkpoint, the options,
    the test set) fails before the first task is scored, so ``progress`` is
    called only once scoring has begun.
    """
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)}")
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device)
    if benchmark == "lake20":
        if shots is not None or eval_tasks is not None:
            raise ConfigError("--shots and --eval-tasks do not apply to lake20 (20 fixed one-shot runs); drop them")
        runs = read_lake_runs(resolve_root(omniglot.root) / "all_runs.zip", config.image_size)
        per_run = per_task_accuracy(solver, runs.tasks, progress=progress)
        errors = {name: 1.0 - float(acc) for name, acc in zip(runs.names, per_run)}
        error = Score.of(1.0 - per_run)
        return {"benchmark": "lake20", "solver": config.solver, "label": solver_label(config),
                "per_run_error": errors, "error": error.accuracy, "error_ci95": error.ci95,
                "human_error": HUMAN_LAKE20_ERROR, "runs": len(errors)}
    shape = RunConfig.from_dict({**config.to_dict(), "shots": shots or config.shots,
                                 "eval_tasks": eval_tasks or config.eval_tasks}).validate()
    tasks = Benchmark.build(shape, omniglot, phases=("test",)).test_tasks
    score = Score.of(per_task_accuracy(solver, tasks, progress=progress))
    return {"benchmark": "tasks", "solver": config.solver, "label": solver_label(config), "ways": shape.ways,
            "shots": shape.shots, "split": shape.split, "test_accuracy": score.accuracy, "test_ci95": score.ci95,
            "test_tasks": score.tasks}


def predict_folder(run_dir: Path, test_dir: Path, output: Path, answers: Optional[Path] = None,
                   device: str = "cpu") -> dict:
    """Write the HW15 submission CSV for ``test_dir``; with ``answers``, also its accuracy."""
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device)
    tasks = read_hw15_folder(test_dir, config.image_size)
    expected = read_answers(answers) if answers else None
    if expected is not None and len(expected) != tasks.query_y.numel():
        raise ConfigError(f"{answers} has {len(expected)} answers for {tasks.query_y.numel()} queries; "
                          f"give the answer file of {test_dir}")
    rows = write_submission(output, solver.predict(tasks))
    accuracy = sum(expected.get(i) == c for i, c in rows) / len(rows) if expected is not None else None
    return {"rows": len(rows), "accuracy": accuracy, "output": str(output), "solver": config.solver}
