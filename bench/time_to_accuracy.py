#!/usr/bin/env python3
"""Wall time to a validation accuracy, from finished run folders.

    python bench/time_to_accuracy.py RUN_DIR [RUN_DIR ...] [--threshold 0.95 --threshold 0.98] [--markdown]

For each run (made by ``omnimeta run --out RUN_DIR``) it reads
``config.json``, ``metrics.jsonl`` and ``result.json`` and gives, per
threshold, the run's wall time (meta-training and the validations so far) at
its first validation at or above it, with that iteration; then the time at
its best validation, the whole meta-training time, the seconds per
meta-train step (steps alone), the best validation accuracy and the test
accuracy. Validation happens every ``--val-every`` iterations, so a time is
only as fine as that grid; "not reached" says the run never validated that
high. Rows keep the order of the arguments, so a "before" run followed by
its "after" run reads as a pair.

The column "val against float32" compares each run's best validation
accuracy with the first float32 run of the same solver in the list: above,
within or below that run's 95% interval (binomial over its validation
answers, as ``bench/fair_table.py`` decides on a default), the rule by which a
faster path may become a default.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fair_table import validation_half_width  # noqa: E402


def validations(run_dir: Path) -> list:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "val_accuracy" in r]


def first_reaching(points: list, threshold: float):
    return next((p for p in points if p["val_accuracy"] >= threshold), None)


def run_row(run_dir: Path, thresholds: list) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    points = validations(run_dir)
    best = next(p for p in points if p["iteration"] == result["best_iteration"])
    reached = {}
    for threshold in thresholds:
        point = first_reaching(points, threshold)
        reached[threshold] = None if point is None else {"seconds": point["seconds"], "iteration": point["iteration"]}
    steps = result.get("step_seconds")
    answers = config.get("val_tasks", 100) * config.get("ways", 5) * config.get("queries", 1)
    return {"val_answers": answers, "run": str(run_dir), "solver": config["solver"],
            "engine": config.get("options", {}).get("engine", ""),
            "precision": config.get("precision", "float32"), "reached": reached,
            "best": {"seconds": best["seconds"], "iteration": best["iteration"]},
            "train_seconds": result["train_seconds"], "iterations": result.get("iterations", config["iterations"]),
            "step_seconds": None if steps is None else steps / result.get("iterations", config["iterations"]),
            "val_accuracy": result["val_accuracy"], "test_accuracy": result.get("test_accuracy"),
            "test_ci95": result.get("test_ci95")}


def against_float32(rows: list) -> None:
    """Set each row's ``against_float32``: its best validation against the first float32 run of its solver."""
    references = {}
    for row in rows:
        if row["precision"] == "float32":
            references.setdefault(row["solver"], row)
    for row in rows:
        reference = references.get(row["solver"])
        if reference is None or reference is row:
            row["against_float32"] = "reference" if reference is row else "no float32 run"
            continue
        half_width = validation_half_width(reference["val_accuracy"], reference["val_answers"])
        difference = row["val_accuracy"] - reference["val_accuracy"]
        verdict = "above" if difference > half_width else "within" if difference >= -half_width else "below"
        row["against_float32"] = f"{verdict} ({difference:+.3f}; ±{half_width:.3f})"


def markdown(rows: list, thresholds: list) -> str:
    columns = (["run", "solver", "engine", "precision"] + [f"to val >= {t}" for t in thresholds]
               + ["to best val", "meta-training", "s/step", "best val", "val against float32", "test (600 tasks)"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [Path(row["run"]).name, row["solver"], row["engine"] or "-", row["precision"]]
        for threshold in thresholds:
            point = row["reached"][threshold]
            cells.append("not reached" if point is None else f"{point['seconds']:.0f} s (it {point['iteration']})")
        cells += [f"{row['best']['seconds']:.0f} s (it {row['best']['iteration']})", f"{row['train_seconds']:.0f} s",
                  "-" if row["step_seconds"] is None else f"{row['step_seconds']:.4f}", f"{row['val_accuracy']:.3f}",
                  row["against_float32"],
                  "-" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, action="append", dest="thresholds",
                        help="Validation accuracy to reach (repeatable; default 0.95 and 0.98).")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="Also write the rows to this file.")
    args = parser.parse_args()
    thresholds = args.thresholds or [0.95, 0.98]
    rows = [run_row(run_dir, thresholds) for run_dir in args.run_dirs]
    against_float32(rows)
    print(markdown(rows, thresholds))
    if args.json_out:
        args.json_out.write_text(json.dumps({"thresholds": thresholds, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
