"""Scoring saved runs: on the fixed test tasks, on Lake's 20-way runs, and on an HW15 test folder.

What ``omnimeta evaluate`` and ``omnimeta predict`` do, as library calls, so a
script gets the same numbers::

    from l2l_omniglot.scoring import evaluate_run
    report = evaluate_run("runs/maml", omniglot, benchmark="lake20")
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from l2l_omniglot.atomic import check_not_an_input, check_output_file
from l2l_omniglot.checkpoint import load_solver
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import load_omniglot, resolve_root
from l2l_omniglot.data.testsets import read_answers, read_hw15_folder, read_lake_runs, write_submission
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.evaluation import HUMAN_LAKE20_ERROR, Score, per_task_accuracy, predict_labels, t_half_width95
from l2l_omniglot.leaks import check_lake20_clean, check_seen_characters_record, predict_leak_report
from l2l_omniglot.solvers import solver_label
from l2l_omniglot.training import Benchmark

BENCHMARKS = ("tasks", "lake20")


def _no_progress(done: int) -> None:
    return None


def check_evaluate_options(benchmark: str, eval_tasks: Optional[int] = None, shots: Optional[int] = None,
                           ways: Optional[int] = None) -> None:
    """Refuse, before a model is loaded, options that the benchmark would ignore or cannot take."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)}")
    shape = (("--ways", ways), ("--shots", shots), ("--eval-tasks", eval_tasks))
    if benchmark == "lake20":
        given = [name for name, value in shape if value is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to lake20 "
                              f"(20 fixed 20-way one-shot runs); drop {'it' if len(given) == 1 else 'them'}")
    for name, value in shape:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a whole number of at least 1 (got {value!r}); or leave it out "
                              f"for the run's own")


def evaluate_run(run_dir: Path, omniglot, benchmark: str = "tasks", eval_tasks: Optional[int] = None,
                 shots: Optional[int] = None, device: str = "cpu",
                 progress: Callable[[int], None] = _no_progress, ways: Optional[int] = None) -> dict:
    """Score a run's best checkpoint on its fixed test tasks (``tasks``) or on Lake's 20 runs (``lake20``).

    ``ways``/``shots``/``eval_tasks`` change the test tasks' shape (default:
    the run's). A model of another way than its run's can answer them only
    where its solver allows it (ProtoNet, transfer ``classes``); the others
    say so in one line. The same holds for ``lake20``'s 20-way runs.

    Everything that can fail on the user's input (the checkpoint, the options,
    the test set) fails before the first task is scored, so ``progress`` is
    called only once scoring has begun.
    """
    check_evaluate_options(benchmark, eval_tasks, shots, ways)
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device)
    if benchmark == "lake20":
        check_lake20_clean(config, omniglot, resolve_root(omniglot.root) / "all_runs.zip")  # its characters unseen
        runs = read_lake_runs(resolve_root(omniglot.root) / "all_runs.zip", config.image_size)
        per_run = per_task_accuracy(solver, runs.tasks, progress=progress)
        errors = {name: 1.0 - float(acc) for name, acc in zip(runs.names, per_run)}
        # 20 runs are too few for the normal approximation: the interval over them is Student's t (19 df).
        error = 1.0 - per_run.double()
        return {"benchmark": "lake20", "solver": config.solver, "label": solver_label(config),
                "per_run_error": errors, "error": error.mean().item(), "error_ci95": t_half_width95(error),
                "interval": f"95% over the {len(errors)} runs, Student's t with {len(errors) - 1} df",
                "human_error": HUMAN_LAKE20_ERROR, "runs": len(errors)}
    shape = RunConfig.from_dict({**config.to_dict(), "ways": ways or config.ways, "shots": shots or config.shots,
                                 "eval_tasks": eval_tasks or config.eval_tasks}).validate()
    tasks = Benchmark.build(shape, omniglot, phases=("test",)).test_tasks
    score = Score.of(per_task_accuracy(solver, tasks, progress=progress))
    return {"benchmark": "tasks", "solver": config.solver, "label": solver_label(config), "ways": shape.ways,
            "shots": shape.shots, "split": shape.split, "test_accuracy": score.accuracy, "test_ci95": score.ci95,
            "test_tasks": score.tasks}


def check_predict_paths(run_dir: Path, test_dir: Path, output: Path, answers: Optional[Path], force: bool) -> None:
    """Before any work: ``output`` writable (an existing file only with ``force``), and none of the inputs."""
    check_not_an_input(output, "-o", {"--answers": answers, "TEST_DIR": test_dir,
                                      "RUN_DIR's checkpoint": Path(run_dir) / "checkpoint.pt"})
    check_output_file(output, force, "-o")


def predict_folder(run_dir: Path, test_dir: Path, output: Path, answers: Optional[Path] = None,
                   device: str = "cpu", omniglot=None, force: bool = True, data_root: Optional[Path] = None) -> dict:
    """Write the HW15 submission CSV for ``test_dir``; with ``answers``, also its accuracy.

    ``output`` is checked before any work (:func:`~l2l_omniglot.atomic.check_output_file`), and so is
    ``answers``; an existing ``output`` is replaced (atomically) only with ``force``.

    The checkpoint tells which characters the model trained on (for one written before it kept them:
    ``omniglot``, by default the data at ``data_root`` or ``$OMNIMETA_DATA``): the report's ``leak_warning`` says when they
    include evaluation-set characters (:mod:`l2l_omniglot.leaks`).
    """
    check_predict_paths(run_dir, test_dir, output, answers, force)
    expected = read_answers(answers) if answers else None
    config, solver, payload = load_solver(Path(run_dir) / "checkpoint.pt", device)
    record = payload.get("leak_record")
    if record is not None:
        record = check_seen_characters_record(record, config, Path(run_dir) / "checkpoint.pt")
    elif omniglot is None:
        omniglot = load_omniglot(data_root)
    leak = predict_leak_report(config, omniglot, record)
    tasks = read_hw15_folder(test_dir, config.image_size)
    if expected is not None and len(expected) != tasks.query_y.numel():
        raise ConfigError(f"{answers} has {len(expected)} answers for {tasks.query_y.numel()} queries; "
                          f"give the answer file of {test_dir}")
    rows = write_submission(output, predict_labels(solver, tasks))
    accuracy = sum(expected.get(i) == c for i, c in rows) / len(rows) if expected is not None else None
    return {"rows": len(rows), "accuracy": accuracy, "output": str(output), "solver": config.solver, **leak}
