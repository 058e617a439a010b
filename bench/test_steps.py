#!/usr/bin/env python3
"""Choose the number of test-time adaptation steps of a trained run on validation tasks, never on test tasks.

    python bench/test_steps.py RUN_DIR [--tasks 300] [--steps 1,3,5,10,20,40] [--transductive run|both|true|false]
                               [--json OUT] [--data-root DIR]

Re-scores the run's best checkpoint for each step count (and, for a solver
with a ``transductive`` option, each batch-norm mode asked for) on the same
fixed list of ``--tasks`` tasks of the run's **validation** characters, and
prints a Markdown table and the best setting. The tasks are the first
``--tasks`` of a stream of their own (:data:`TUNING_STREAM`, seed
``EVALUATION_SEED``): the same for every run of a split and task shape, and
neither the tasks the run chose its checkpoint on nor any test task. A
default chosen here is then quoted on the test tasks once, as a final result
(``omnimeta evaluate``). ``--json OUT`` writes the table and the choice.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

#: The iteration number of the tuning tasks' stream. A run meta-trains on iterations 1, 2, ...; -1 and -2 are
#: the fixed validation and test lists (``data/tasks.py``); this list uses the validation characters only.
TUNING_STREAM = -3
MODES = {"true": (True,), "false": (False,), "both": (True, False)}


def fail(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(2)


def tuning_tasks(config, omniglot, count: int):
    """``count`` fixed tasks of the run's shape on the validation characters of its split."""
    from l2l_omniglot.data.splits import make_split
    from l2l_omniglot.data.tasks import fixed_tasks, phase_samplers

    samplers = phase_samplers(omniglot, make_split(config.split, omniglot), config.ways, config.shots,
                              config.queries, phases=("val",))
    return fixed_tasks(samplers["val"], count, TUNING_STREAM)


def sweep(solver, tasks, steps: list, modes: tuple, report=print) -> list:
    """One row per (mode, steps): the validation accuracy with its 95% CI and the seconds it took."""
    from l2l_omniglot.evaluation import Score, per_task_accuracy

    original = solver.options
    rows = []
    try:
        for mode in modes:
            for count in steps:
                changes = {"test_inner_steps": count}
                if mode is not None:
                    changes["transductive"] = mode
                solver.options = dataclasses.replace(original, **changes)
                start = time.perf_counter()
                score = Score.of(per_task_accuracy(solver, tasks))
                rows.append({"test_inner_steps": count, "transductive": mode, "val_accuracy": score.accuracy,
                             "val_ci95": score.ci95, "val_tasks": score.tasks,
                             "seconds": round(time.perf_counter() - start, 2)})
                report(f"  test_inner_steps={count:4d}" + ("" if mode is None else f" transductive={mode!s:5}")
                       + f"  val {score.accuracy:.4f} ± {score.ci95:.4f}")
    finally:
        solver.options = original
    return rows


def markdown(rows: list, best: dict) -> str:
    with_mode = rows[0]["transductive"] is not None
    header = ["test steps"] + (["transductive"] if with_mode else []) + \
             [f"val acc ± 95% CI ({rows[0]['val_tasks']} validation tasks)", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cell = f"{row['val_accuracy']:.4f} ± {row['val_ci95']:.4f}"
        if row is best:
            cell = f"**{cell}**"
        mode = [("yes" if row["transductive"] else "no")] if with_mode else []
        lines.append("| " + " | ".join([str(row["test_inner_steps"])] + mode + [cell, f"{row['seconds']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tasks", type=int, default=300, help="validation tasks to score each setting on")
    parser.add_argument("--steps", default="1,3,5,10,20,40", help="comma-separated test_inner_steps to try")
    parser.add_argument("--transductive", choices=("run", *MODES), default="run",
                        help="batch-norm modes to try (solvers with a transductive option); run: the run's own")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the choice here")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)

    from l2l_omniglot import load_omniglot
    from l2l_omniglot.atomic import write_json
    from l2l_omniglot.compare import load_run
    from l2l_omniglot.data.tasks import EVALUATION_SEED
    from l2l_omniglot.errors import OmnimetaError
    from l2l_omniglot.solvers import solver_label

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        fail(f"--steps {args.steps!r} is not a comma-separated list of integers")
    if not steps or min(steps) < 0:
        fail("--steps needs step counts >= 0")
    if args.tasks < 1:
        fail("--tasks must be at least 1")
    try:
        config, solver = load_run(args.run_dir)
        fields = {f.name for f in dataclasses.fields(solver.options)}
        if "test_inner_steps" not in fields:
            fail(f"{args.run_dir} is a {config.solver} run, which has no test_inner_steps option to sweep")
        if args.transductive == "run":
            modes = (solver.options.transductive,) if "transductive" in fields else (None,)
        elif "transductive" not in fields:
            fail(f"{config.solver} has no transductive option; drop --transductive")
        else:
            modes = MODES[args.transductive]
        omniglot = load_omniglot(args.data_root)
        tasks = tuning_tasks(config, omniglot, args.tasks)
    except OmnimetaError as error:
        fail(str(error))
    where = (f"{args.tasks} fixed {config.ways}-way {config.shots}-shot tasks of the {config.split} split's "
             f"validation characters (stream {TUNING_STREAM}, seed {EVALUATION_SEED}; not the run's "
             f"checkpoint-selection tasks, no test task)")
    print(f"{args.run_dir}: {solver_label(config)}; {where}", flush=True)
    rows = sweep(solver, tasks, steps, modes, report=lambda line: print(line, flush=True))
    best = max(rows, key=lambda row: row["val_accuracy"])  # the first of equals: the fewest steps
    print()
    print(markdown(rows, best))
    choice = f"test_inner_steps={best['test_inner_steps']}" + \
        ("" if best["transductive"] is None else f", transductive={str(best['transductive']).lower()}")
    print(f"Best on validation: {choice} ({best['val_accuracy']:.4f} ± {best['val_ci95']:.4f}). Make it the "
          f"default, and quote test accuracy only from runs made with it (their result.json, on the test tasks).")
    if args.json:
        write_json(args.json, {"run": str(args.run_dir), "label": solver_label(config), "solver": config.solver,
                               "tasks": {"phase": "val", "split": config.split, "stream": TUNING_STREAM,
                                         "seed": EVALUATION_SEED, "count": args.tasks, "ways": config.ways,
                                         "shots": config.shots, "queries": config.queries},
                               "rows": rows, "best": best})


if __name__ == "__main__":
    main()
