#!/usr/bin/env python3
"""The Markdown tables of docs/results.md, generated from run folders, never typed by hand.

    python bench/results_table.py RUNS [RUNS ...] [--score-lake20] [--score-ways W] [--data-root DIR] [--json OUT]

Each RUNS is a run folder (``omnimeta run --out``, ``bench/train.py``) or a
folder searched for them (every folder below it that holds ``result.json``
and ``config.json``). Runs of one solver with the same settings but different
seeds (``--seed``) are one row: the mean over seeds, and in columns of their
own the sample standard deviation across seeds (with the smallest and largest)
and the 95% confidence interval (over tasks for one run; over Lake's 20 runs,
by Student's t, for the lake20 table). Each table names the tasks
its numbers come from:

* one table per split (``lake`` first): the best validation accuracy (on the
  run's fixed validation tasks, which chose the checkpoint) and the test
  accuracy (on the fixed test tasks, scored once, on that checkpoint); the
  ``vinyals`` table adds the published numbers of the paper behind each solver
  (on that paper's own protocol);
* a run's checkpoint scored on test tasks of another shape than its own
  (``--score-ways 20``: ``omnimeta evaluate RUN --ways 20 --shots 1 --json >
  RUN/evaluate-20w1s.json``, for the solvers that can answer another way,
  e.g. ProtoNet as its paper does) is a row of that shape, marked as such;
* Lake's 20-way one-shot runs (``all_runs.zip``), for runs whose folder holds
  ``lake20.json`` (``omnimeta evaluate RUN --benchmark lake20 --json >
  RUN/lake20.json``; ``--score-lake20`` writes it for every one-shot run
  that lacks it and whose solver can answer 20 ways), next to the published
  error rates. A run that saw any character of Lake's runs is refused by
  ``evaluate`` and left out, with a note on stderr.

``--json OUT`` writes the rows of every table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

#: Published accuracy (%) on Omniglot, Vinyals et al.'s split with rotations, keyed by solver and (ways, shots):
#: the numbers of the issue that asked for this table (each paper's own protocol).
PAPERS = {
    "maml": ("Finn et al. 2017, Table 1", {(5, 1): "98.7 ± 0.4", (20, 1): "95.8 ± 0.3"}),
    "fomaml": ("Nichol et al. 2018 (first-order MAML, transductive)", {(5, 1): "98.3 ± 0.5", (20, 1): "89.4 ± 0.5"}),
    "protonet": ("Snell et al. 2017, Table 1", {(5, 1): "98.8", (20, 1): "96.0"}),
    "anil": ("Raghu et al. 2020", {(20, 1): "96.2 ± 0.5"}),
}
#: Published error rates on Lake's 20 runs.
LAKE20_REFERENCES = (
    ("humans", 0.045, "Lake et al. 2015"),
    ("Bayesian Program Learning (BPL)", 0.033, "Lake et al. 2015"),
    ("Prototypical Networks", 0.137, "as reported in Lake et al. 2019"),
    ("Siamese convolutional network", 0.080, "as reported in Lake et al. 2019"),
)
SPLIT_ORDER = ("lake", "vinyals", "random")


def find_runs(paths: list) -> list:
    """Run folders (holding result.json and config.json) in ``paths`` or below them, each once, in order."""
    found = []
    for path in map(Path, paths):
        candidates = [path] if (path / "result.json").is_file() else sorted(p.parent for p in path.rglob("result.json"))
        found += [c for c in candidates if (c / "config.json").is_file() and c not in found]
    return found


def read_json(path: Path):
    from l2l_omniglot.errors import DataError

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} cannot be read ({str(error).splitlines()[0][:120]}); rerun what wrote it, or "
                        f"leave its run out") from None


def load_runs(paths: list) -> list:
    from l2l_omniglot.compare import read_result, run_label
    from l2l_omniglot.config import RunConfig

    runs = []
    for run_dir in find_runs(paths):
        config = RunConfig.from_dict(read_json(run_dir / "config.json"))
        lake20 = run_dir / "lake20.json"
        label = run_label(config)
        result = read_result(run_dir)
        runs.append({"dir": run_dir, "config": config, "label": label, "result": result,
                     "lake20": read_json(lake20) if lake20.is_file() else None, "evaluated": False})
        for path in sorted(run_dir.glob("evaluate-*w*s.json")):
            runs.append(evaluated_run(runs[-1], read_json(path)))
    return runs


def evaluated_run(run: dict, report: dict) -> dict:
    """The run's checkpoint scored on tasks of another shape (an ``omnimeta evaluate --json`` report) as a run."""
    config = dataclasses.replace(run["config"], ways=report["ways"], shots=report["shots"])
    result = {**run["result"], "val_accuracy": None, "test_accuracy": report["test_accuracy"],
              "test_ci95": report["test_ci95"], "test_tasks": report["test_tasks"]}
    label = f"{run['label']}, trained {run['config'].ways}-way {run['config'].shots}-shot"
    return {"dir": run["dir"], "config": config, "label": label, "result": result, "lake20": None, "evaluated": True}


def group(runs: list) -> list:
    """Runs that differ only in their seed, together (the key of ``omnimeta compare``'s rows)."""
    from l2l_omniglot.compare import seed_group_key

    groups = {}
    for run in runs:
        groups.setdefault(seed_group_key(run["label"], run["config"]), []).append(run)
    return list(groups.values())


def spread(values: list) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


def _number(percent: bool):
    return (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:.4f}")


def cell(values: list, percent: bool = False) -> str:
    """The mean of ``values`` (one per seed), and for several seeds ``± std (min–max)`` across them."""
    f, s = _number(percent), spread(values)
    return f(s["mean"]) if s["n"] == 1 else f"{f(s['mean'])} ± {f(s['std'])} ({f(s['min'])}–{f(s['max'])})"


def mean_cell(values: list, percent: bool = False) -> str:
    return _number(percent)(spread(values)["mean"])


def seed_spread_cell(values: list, percent: bool = False) -> str:
    """``std (min–max)`` across seeds, or ``-`` for one seed: a spread, never mixed with an interval."""
    f, s = _number(percent), spread(values)
    return "-" if s["n"] == 1 else f"{f(s['std'])} ({f(s['min'])}–{f(s['max'])})"


def interval_cell(ci95, percent: bool = False) -> str:
    return "-" if ci95 is None else f"± {_number(percent)(ci95)}"


def markdown(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]) + "\n"


def split_table(split: str, groups: list) -> tuple:
    """The accuracy table of one split: its Markdown and its rows."""
    first = groups[0][0]
    val_tasks, test_tasks = first["config"].val_tasks, first["result"].get("test_tasks", first["config"].eval_tasks)
    papers = split == "vinyals"
    title = (f"**{split} split.** val acc: the best validation accuracy on each run's {val_tasks} fixed validation "
             f"tasks (they chose the checkpoint); test acc: that checkpoint on the {test_tasks} fixed test tasks, "
             f"scored once: the mean over seeds, the spread across seeds (std, min–max) and the 95% interval over "
             f"tasks (one run) each in a column of its own.")
    header = ["solver", "task", "seeds", "iterations (best)", f"val acc ({val_tasks} validation tasks)",
              f"test acc ({test_tasks} test tasks)", "test acc across seeds: std (min–max)",
              "test acc 95% CI over tasks", "meta-train time (s)"] + \
             (["paper (its own protocol), %"] if papers else []) + ["runs"]
    cells, rows = [], []
    for runs in groups:
        config, results = runs[0]["config"], [run["result"] for run in runs]
        tests = [r["test_accuracy"] for r in results]
        vals = [r["val_accuracy"] for r in results if r.get("val_accuracy") is not None]
        seconds = [r["train_seconds"] for r in results if r.get("train_seconds") is not None]
        best = sorted({r.get("best_iteration") for r in results} - {None})
        paper = PAPERS.get(config.solver, ("", {}))
        row = {"split": split, "solver": runs[0]["label"], "ways": config.ways, "shots": config.shots,
               "seeds": [run["config"].seed for run in runs], "test": spread(tests),
               "test_ci95": results[0].get("test_ci95") if len(runs) == 1 else None,
               "val": spread(vals) if vals else None, "train_seconds": spread(seconds) if seconds else None,
               "test_tasks": results[0].get("test_tasks"), "val_tasks": config.val_tasks,
               "runs": [str(run["dir"]) for run in runs]}
        if papers:
            row["paper"] = f"{paper[1][(config.ways, config.shots)]} ({paper[0]})" \
                if (config.ways, config.shots) in paper[1] else "-"
        rows.append(row)
        cells.append([row["solver"], f"{config.ways}-way {config.shots}-shot", len(runs),
                      f"{config.iterations} ({', '.join(map(str, best)) or '-'})",
                      cell(vals) if vals else "-", mean_cell(tests), seed_spread_cell(tests),
                      interval_cell(row["test_ci95"]),
                      f"{spread(seconds)['mean']:.0f}" if seconds else "-"] +
                     ([row["paper"]] if papers else []) +
                     [", ".join(f"`{run['dir'].name}`" + (" (evaluate)" if run["evaluated"] else "") for run in runs)])
    return title + "\n\n" + markdown(header, cells), rows


def score_missing_lake20(runs: list, data_root) -> None:
    """Write ``lake20.json`` for one-shot runs that lack it; runs the guard or the solver refuse are named on stderr."""
    from l2l_omniglot import load_omniglot
    from l2l_omniglot.atomic import write_json
    from l2l_omniglot.errors import ConfigError
    from l2l_omniglot.scoring import evaluate_run

    todo = [run for run in runs if run["lake20"] is None and not run["evaluated"] and run["config"].shots == 1]
    if not todo:
        return
    omniglot = load_omniglot(data_root)
    for run in todo:
        try:
            run["lake20"] = evaluate_run(run["dir"], omniglot, "lake20")
        except ConfigError as error:
            print(f"note: {run['dir']} left out of the lake20 table: {error}", file=sys.stderr)
            continue
        write_json(run["dir"] / "lake20.json", run["lake20"])


def score_other_ways(runs: list, ways: int, data_root) -> list:
    """Write ``evaluate-{ways}w1s.json`` for one-shot runs of another way whose solver can answer ``ways``."""
    from l2l_omniglot import load_omniglot
    from l2l_omniglot.atomic import write_json
    from l2l_omniglot.errors import ConfigError
    from l2l_omniglot.scoring import evaluate_run

    todo = [run for run in runs if not run["evaluated"] and run["config"].shots == 1 and run["config"].ways != ways
            and not (run["dir"] / f"evaluate-{ways}w1s.json").is_file()]
    added = []
    omniglot = load_omniglot(data_root) if todo else None
    for run in todo:
        try:
            report = evaluate_run(run["dir"], omniglot, "tasks", shots=1, ways=ways)
        except ConfigError as error:
            print(f"note: {run['dir']} has no {ways}-way row: {error}", file=sys.stderr)
            continue
        write_json(run["dir"] / f"evaluate-{ways}w1s.json", report)
        added.append(evaluated_run(run, report))
    return added


def runs_interval(reports: list):
    """The 95% t interval over Lake's 20 runs of the error per run averaged over the seeds' ``lake20`` reports."""
    import torch

    from l2l_omniglot.evaluation import t_half_width95

    names = sorted(reports[0]["per_run_error"])
    if any(sorted(report.get("per_run_error", {})) != names for report in reports):
        return None
    per_run = torch.tensor([[report["per_run_error"][name] for name in names] for report in reports]).mean(dim=0)
    return t_half_width95(per_run)


def lake20_table(groups: list) -> tuple:
    title = ("**Lake's 20-way one-shot runs** (`all_runs.zip`: 20 runs of 20 one-shot classes and 20 test items, "
             "drawings of 200 evaluation-set characters; only models that saw none of them). Error rate: the mean "
             "over seeds, the spread across seeds (std, min–max), and the 95% interval over the 20 runs of the "
             "seed-averaged error per run (Student's t, 19 df), each in a column of its own.")
    header = ["model", "split", "trained", "seeds", "error (20 runs)", "across seeds: std (min–max)",
              "95% CI over the 20 runs (t)", "source"]
    cells, rows = [], []
    for runs in groups:
        errors = [run["lake20"]["error"] for run in runs]
        config = runs[0]["config"]
        row = {"solver": runs[0]["label"], "split": config.split, "seeds": [run["config"].seed for run in runs],
               "error": spread(errors), "error_ci95": runs_interval([run["lake20"] for run in runs]),
               "runs": [str(run["dir"]) for run in runs]}
        rows.append(row)
        trained = f"{config.ways}-way {config.shots}-shot, {config.iterations} iterations"
        row["trained"] = trained
        cells.append([row["solver"], config.split, trained, len(runs), mean_cell(errors, percent=True),
                      seed_spread_cell(errors, percent=True), interval_cell(row["error_ci95"], percent=True),
                      "this project: " + ", ".join(f"`{run['dir'].name}`" for run in runs)])
    for name, error, source in LAKE20_REFERENCES:
        cells.append([name, "-", "-", "-", f"{100 * error:.1f}%", "-", "-", source])
        rows.append({"solver": name, "error": {"mean": error}, "source": source})
    return title + "\n\n" + markdown(header, cells), rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders holding them")
    parser.add_argument("--score-lake20", action="store_true",
                        help="score 20-way one-shot runs without lake20.json on Lake's runs (writes it)")
    parser.add_argument("--score-ways", type=int, default=None, metavar="W",
                        help="also score one-shot runs of another way on W-way test tasks, where the solver can "
                             "(writes RUN/evaluate-Ww1s.json)")
    parser.add_argument("--data-root", default=None, help="the Omniglot data (for --score-lake20, --score-ways)")
    parser.add_argument("--json", type=Path, default=None, help="also write every table's rows here")
    args = parser.parse_args(argv)
    from l2l_omniglot.errors import OmnimetaError

    try:
        runs = load_runs(args.runs)
        if not runs:
            raise OmnimetaError(f"no run folders (with result.json and config.json) in {', '.join(args.runs)}")
        if args.score_lake20:
            score_missing_lake20(runs, args.data_root)
        if args.score_ways:
            runs += score_other_ways(runs, args.score_ways, args.data_root)
    except OmnimetaError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
    splits = sorted({run["config"].split for run in runs},
                    key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER))
    tables, report = [], {}
    for split in splits:
        text, rows = split_table(split, group([run for run in runs if run["config"].split == split]))
        tables.append(text)
        report[split] = rows
    scored = [run for run in runs if run["lake20"] is not None]
    if scored:
        text, rows = lake20_table(group(scored))
        tables.append(text)
        report["lake20"] = rows
    print("\n".join(tables), end="")
    if args.json:
        from l2l_omniglot.atomic import write_json

        write_json(args.json, report)


if __name__ == "__main__":
    main()
