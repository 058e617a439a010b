"""Scoring saved runs on a benchmark (the fixed test tasks, Lake's 20-way runs, an HW15 folder, any plugin).

What ``omnimeta evaluate`` and ``omnimeta predict`` do, one library call each,
so a script gets the same numbers::

    from l2l_omniglot.scoring import evaluate_run
    report = evaluate_run("runs/maml", omniglot, benchmark="lake20")

The benchmark (:mod:`l2l_omniglot.benchmarks`) builds the tasks and turns
per-task accuracies into the report; this module loads the model, applies the
benchmark's leak guard (:mod:`l2l_omniglot.leaks`) and scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, ContextManager, Optional

from l2l_omniglot.atomic import check_not_an_input, check_output_file
from l2l_omniglot.benchmarks import BENCHMARKS, make_benchmark
from l2l_omniglot.checkpoint import load_solver
from l2l_omniglot.data.omniglot import load_omniglot, loaded
from l2l_omniglot.data.testsets import write_submission
from l2l_omniglot.evaluation import no_progress, per_task_accuracy, predict_labels
from l2l_omniglot.leaks import check_seen_characters_record, guard_benchmark
from l2l_omniglot.precision import check_precision, computing_in
from l2l_omniglot.solvers import solver_label


def evaluate_run(run_dir: Path, omniglot=None, benchmark: str = "tasks", eval_tasks: Optional[int] = None,
                 shots: Optional[int] = None, device: str = "cpu",
                 progress: Callable[[str, Optional[int]], ContextManager] = no_progress, ways: Optional[int] = None,
                 options: Optional[dict] = None, precision: Optional[str] = None) -> dict:
    """Score a run's best checkpoint on ``benchmark`` (any installed one: ``omnimeta benchmarks``).

    ``ways``/``shots``/``eval_tasks`` are the options of that name (the
    ``tasks`` benchmark's test-task shape; default: the run's), ``options``
    any other of the benchmark's (``{"folder": ..., "answers": ...}`` for
    ``hw15``). A model of another way than its run's can answer other ways
    only where its solver allows it (ProtoNet, transfer ``classes``); the
    others say so in one line. ``precision`` (default: the run's) is what the
    tasks are adapted and predicted in (:mod:`l2l_omniglot.precision`).

    Everything that can fail on the user's input (the options, the
    checkpoint, the leak guard, the test set) fails before the first task is
    scored, so ``progress`` (a factory like :func:`~l2l_omniglot.evaluation.no_progress`, entered with the
    number of tasks) is entered only once scoring has begun. The
    options are checked before ``omniglot`` (see :func:`~l2l_omniglot.data.omniglot.loaded`) is loaded.
    """
    chosen = make_benchmark(benchmark, {"ways": ways, "shots": shots, "eval_tasks": eval_tasks}, options)
    check_precision(precision)
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device, precision)
    precision = precision or config.precision
    data = loaded(omniglot)
    leak = guard_benchmark(chosen, config, data)
    items = chosen.items(config, data)
    with progress(f"evaluate ({benchmark})", len(items)) as advance, computing_in(precision, device):
        per_task = per_task_accuracy(solver, items, progress=advance)
    return {"benchmark": benchmark, "solver": config.solver, "label": solver_label(config),
            "precision": precision, **chosen.score(per_task, items, config), **leak}


def show_report(report: dict, run_dir: Path) -> list:
    """What ``omnimeta evaluate`` prints for ``report`` (rich renderables), as its benchmark shows it."""
    return BENCHMARKS[report["benchmark"]].show(report, str(run_dir))


def check_predict_paths(run_dir: Path, test_dir: Path, output: Path, answers: Optional[Path], force: bool) -> None:
    """Before any work: ``output`` writable (an existing file only with ``force``), and none of the inputs."""
    check_not_an_input(output, "-o", {"--answers": answers, "TEST_DIR": test_dir,
                                      "RUN_DIR's checkpoint": Path(run_dir) / "checkpoint.pt"})
    check_output_file(output, force, "-o")


def predict_folder(run_dir: Path, test_dir: Path, output: Path, answers: Optional[Path] = None,
                   device: str = "cpu", omniglot=None, force: bool = True, data_root: Optional[Path] = None,
                   precision: Optional[str] = None) -> dict:
    """Write the HW15 submission CSV for ``test_dir`` (the ``hw15`` benchmark); with ``answers``, also its accuracy.

    ``output`` is checked before any work (:func:`~l2l_omniglot.atomic.check_output_file`), and so is
    ``answers``; an existing ``output`` is replaced (atomically) only with ``force``.

    The checkpoint tells which characters the model trained on, so no data is needed (for one written before it
    kept them: ``omniglot``, see :func:`~l2l_omniglot.data.omniglot.loaded`, by default the data at ``data_root``
    or ``$OMNIMETA_DATA``): the
    report's ``leak_warning`` says when they include evaluation-set characters (:mod:`l2l_omniglot.leaks`).
    ``precision`` (default: the run's) is what the tasks are adapted and predicted in.
    """
    check_predict_paths(run_dir, test_dir, output, answers, force)
    check_precision(precision)
    hw15 = make_benchmark("hw15", options={"folder": str(test_dir), "answers": str(answers) if answers else None})
    expected = hw15.expected()
    config, solver, payload = load_solver(Path(run_dir) / "checkpoint.pt", device, precision)
    precision = precision or config.precision
    record = payload.get("leak_record")
    if record is not None:
        record = check_seen_characters_record(record, config, Path(run_dir) / "checkpoint.pt")
    data = omniglot if omniglot is not None else (lambda: load_omniglot(data_root))
    leak = guard_benchmark(hw15, config, data, record)
    tasks = hw15.unlabelled(config)
    if expected is not None:
        hw15.check_answers(expected, tasks)
    with computing_in(precision, device):
        predicted = predict_labels(solver, tasks)
    rows = write_submission(output, predicted)
    accuracy = sum(expected.get(i) == c for i, c in rows) / len(rows) if expected is not None else None
    return {"rows": len(rows), "accuracy": accuracy, "output": str(output), "solver": config.solver,
            "precision": precision, **leak}
