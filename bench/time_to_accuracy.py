#!/usr/bin/env python3
"""Wall time to a validation accuracy, from finished run folders.

    python bench/time_to_accuracy.py RUN_DIR [RUN_DIR ...] [--threshold 0.90]

For each run (made by ``omnimeta run --out RUN_DIR``) it reads
``metrics.jsonl`` and ``result.json`` and prints: the meta-training seconds at
the first validation at or above the threshold, at the best validation, and in
all, the test time, and the test accuracy. Validation happens every
``--val-every`` iterations, so the first time is only as fine as that grid.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def validations(run_dir: Path) -> list:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "val_accuracy" in r]


def first_reaching(points: list, threshold: float):
    return next((p for p in points if p["val_accuracy"] >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, default=0.90)
    args = parser.parse_args()
    table = Table(title=f"time to validation accuracy >= {args.threshold}")
    for column in ("run", "solver", "engine", f"to val >= {args.threshold}", "to best val", "meta-train total",
                   "test", "best val", "test acc ± 95% CI"):
        table.add_column(column, justify="left" if column in ("run", "solver", "engine") else "right")
    for run_dir in args.run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        result = json.loads((run_dir / "result.json").read_text())
        points = validations(run_dir)
        reached = first_reaching(points, args.threshold)
        best = next(p for p in points if p["iteration"] == result["best_iteration"])
        table.add_row(str(run_dir), config["solver"], config.get("engine", "l2l"),
                      f"{reached['seconds']:.0f} s (it {reached['iteration']})" if reached else "not reached",
                      f"{best['seconds']:.0f} s (it {best['iteration']})", f"{result['train_seconds']:.0f} s",
                      f"{result['eval_seconds']:.0f} s", f"{result['val_accuracy']:.3f}",
                      f"{result['test_accuracy']:.4f} ± {result['test_ci95']:.4f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
