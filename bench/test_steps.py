#!/usr/bin/env python3
"""How a trained run's test accuracy depends on the number of test-time adaptation steps.

    python bench/test_steps.py RUN_DIR [--tasks 300] [--steps 1,3,5,10,20,40]

Re-scores the run's best checkpoint on the first ``--tasks`` fixed test tasks
for each step count (same tasks for every count) and prints one line each.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

from l2l_omniglot import load_omniglot
from l2l_omniglot.compare import load_solver
from l2l_omniglot.evaluation import Score, per_task_accuracy
from l2l_omniglot.training import Benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--steps", default="1,3,5,10,20,40")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    omniglot = load_omniglot(args.data_root)
    config, solver = load_solver(args.run_dir, "cpu", omniglot)
    tasks = Benchmark.build(dataclasses.replace(config, eval_tasks=args.tasks), omniglot, phases=("test",)).test_tasks
    print(f"{args.run_dir}: {config.solver}, {args.tasks} fixed {config.ways}-way {config.shots}-shot test tasks")
    for steps in map(int, args.steps.split(",")):
        solver.config = dataclasses.replace(config, test_inner_steps=steps)
        start = time.perf_counter()
        score = Score.of(per_task_accuracy(solver, tasks))
        print(f"test_inner_steps={steps:3d}  accuracy {score.accuracy:.4f} ± {score.ci95:.4f}  "
              f"({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
