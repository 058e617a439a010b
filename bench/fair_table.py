#!/usr/bin/env python3
"""The equal-budget table of docs/results.md (issue 21), generated from a study folder, never typed by hand.

    python bench/fair_table.py FAIR_DIR [--trials-goal 24] [--json OUT]

FAIR_DIR holds, for each solver S, the study ``tune/S`` (``omnimeta tune
--solver S --trials N --iterations I --out FAIR_DIR/tune/S``, the same N and I
for every solver) and the full-length runs ``runs/S-tuned-sK`` (``omnimeta run
--solver S --params FAIR_DIR/tune/S/best.json --seed K``) and
``runs/S-default-sK`` (``omnimeta run --solver S --seed K``). It prints:

* the studies: the budget (trials, iterations per trial), what became of the
  trials (complete, pruned, failed), their wall time, the best validation
  accuracy and the settings it came from;
* the fair table: each solver's default row beside its tuned row (validation
  accuracy on the 100 fixed validation tasks, test accuracy on the 600 fixed
  test tasks, scored once, one column per seed count), the ranking of the
  solvers by test accuracy before and after tuning, and which tuned settings
  validate better than the defaults: above their 95% interval (the rule for
  changing a default);
* the cost: each study's wall time against the wall time of one default run
  at full length, and the same for a study of ``--trials-goal`` trials,
  extrapolated from the seconds per trial measured (said so in the table).

A solver without a study or without runs is listed as missing, never filled in.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_table import cell, load_runs, markdown, read_json, spread  # noqa: E402

from l2l_omniglot import resolve_config  # noqa: E402

SOLVER_ORDER = ("transfer", "fomaml", "maml", "protonet", "anil")
ARMS = ("default", "tuned")
RUN_NAME = re.compile(r"(?P<solver>.+)-(?P<arm>default|tuned)-s(?P<seed>\d+)")


def load_fair(fair_dir: Path) -> dict:
    """``{solver: {"study": tune.json or None, "default": [runs], "tuned": [runs]}}`` for every solver found."""
    fair_dir = Path(fair_dir)
    solvers = {}
    for study in sorted((fair_dir / "tune").glob("*/tune.json")):
        solvers.setdefault(study.parent.name, {"study": None, "default": [], "tuned": []})["study"] = read_json(study)
    runs_dir = fair_dir / "runs"
    for run in load_runs([runs_dir]) if runs_dir.is_dir() else []:
        if run["evaluated"]:
            continue
        named = RUN_NAME.fullmatch(run["dir"].name)
        if named is None or named["solver"] != run["config"].solver or run["result"].get("test_accuracy") is None:
            print(f"note: {run['dir']} left out: not a finished run named SOLVER-(default|tuned)-sSEED of its "
                  f"solver", file=sys.stderr)
            continue
        solvers.setdefault(named["solver"], {"study": None, "default": [], "tuned": []})[named["arm"]].append(run)
    order = {name: index for index, name in enumerate(SOLVER_ORDER)}
    return dict(sorted(solvers.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def finished_trials(study: dict) -> list:
    """The trials that are results (complete or pruned): a failed one (interrupted, impossible) costs time but is
    run again, so it is left out of the study's cost."""
    return [trial for trial in study["trials"] if trial["state"] in ("COMPLETE", "PRUNED")]


def study_seconds(study: dict) -> float:
    return sum(trial["seconds"] or 0.0 for trial in finished_trials(study))


def study_table(solvers: dict) -> str:
    rows = []
    for solver, found in solvers.items():
        study = found["study"]
        if study is None:
            rows.append([solver, "missing", "", "", "", "", ""])
            continue
        states = ", ".join(f"{count} {state.lower()}" for state, count in study["states"].items())
        best = study["best"]
        settings = ", ".join(f"{name}={_short(value)}" for name, value in best["params"].items()) if best else "-"
        rows.append([solver, f"{study['finished']} of {study['trials_requested']} ({states})",
                     study["config"]["iterations"], f"{study_seconds(study):.0f}",
                     f"{best['val_accuracy']:.4f} (trial {best['trial']})" if best else "-", settings,
                     study["pruner"]])
    return markdown(["solver", "finished trials", "iterations per trial", "study wall time (s)",
                     "best val acc (trial)", "best settings", "pruner"], rows)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def arm_cells(runs: list) -> list:
    if not runs:
        return ["not run", "", "", ""]
    iterations = runs[0]["config"].iterations
    return [f"{len(runs)}", f"{iterations}", cell([r["result"]["val_accuracy"] for r in runs]),
            cell([r["result"]["test_accuracy"] for r in runs]) + (
                f" (± {runs[0]['result']['test_ci95']:.4f} over tasks)" if len(runs) == 1 else "")]


def validation_half_width(accuracy: float, answers: int) -> float:
    """The 95% half-width of a validation accuracy over ``answers`` answers taken as independent (binomial)."""
    return 1.96 * math.sqrt(accuracy * (1 - accuracy) / answers)


def validates_better(found: dict) -> str:
    """Whether the tuned settings validate better than the defaults, on the full-length runs' validation tasks.

    Better means above the defaults' 95% interval: the mean validation accuracy of the defaults, give or take
    1.96 binomial standard errors over the answers to the validation tasks (tasks x ways x queries, taken as
    independent, so the interval is if anything narrow). A gain inside it is noise: the default stays.
    """
    default, tuned = found["default"], found["tuned"]
    if not default or not tuned:
        return "not measured"
    before = spread([r["result"]["val_accuracy"] for r in default])["mean"]
    gain = round(spread([r["result"]["val_accuracy"] for r in tuned])["mean"] - before, 6)  # not float noise
    config = default[0]["config"]
    half_width = validation_half_width(before, config.val_tasks * config.ways * config.queries)
    verdict = "yes" if gain > half_width else "within noise" if gain > -half_width else "no"
    return f"{verdict} ({gain:+.4f}; ±{half_width:.4f})"


def is_todays_default(run: dict) -> bool:
    """Whether ``run`` trained the settings that ``omnimeta run --solver S`` trains now (its seed and device aside)."""
    config = run["config"]
    return config.to_dict() == resolve_config(config.solver, seed=config.seed, device=config.device).to_dict()


def arm_label(arm: str, runs: list) -> str:
    """The arm, and where a tuned setting became the default since the runs were made, which arm is which now."""
    if arm == "default" and runs and not is_todays_default(runs[0]):
        return "default (as run; today's differs)"
    if arm == "tuned" and runs and is_todays_default(runs[0]):
        return "tuned (now the default)"
    return arm


def fair_table(solvers: dict) -> str:
    rows = []
    for solver, found in solvers.items():
        for arm in ARMS:
            rows.append([solver, arm_label(arm, found[arm]), *arm_cells(found[arm]),
                         validates_better(found) if arm == "tuned" else ""])
    return markdown(["solver", "settings", "seeds", "iterations", "val acc (100 validation tasks)",
                     "test acc (600 test tasks)", "tuned validates better"], rows)


def ranking(solvers: dict, arm: str) -> list:
    """The solvers that have both arms, by mean test accuracy of ``arm``, best first."""
    scored = [(spread([r["result"]["test_accuracy"] for r in found[arm]])["mean"], solver)
              for solver, found in solvers.items() if found["default"] and found["tuned"]]
    return [solver for _, solver in sorted(scored, reverse=True)]


def cost_table(solvers: dict, trials_goal: int) -> str:
    rows = []
    for solver, found in solvers.items():
        study, default = found["study"], found["default"]
        if study is None or not default or not finished_trials(study):
            rows.append([solver, "not measured", "", "", "", ""])
            continue
        seconds = study_seconds(study)
        # The fastest seed: later seeds may have run beside more load than the study did, and a slower default
        # run would make the study look cheaper than it is.
        run_seconds = min(r["result"]["train_seconds"] + r["result"].get("eval_seconds", 0.0) for r in default)
        per_trial = seconds / len(finished_trials(study))
        goal = per_trial * trials_goal
        rows.append([solver, f"{seconds:.0f} s ({len(finished_trials(study))} trials)", f"{run_seconds:.0f} s",
                     f"{seconds / run_seconds:.2f}", f"{goal:.0f} s = {goal / run_seconds:.2f} default runs",
                     "yes" if goal <= 8 * run_seconds else "no"])
    return markdown(["solver", "study wall time", "one default run (train + test; fastest seed)",
                     "study / default run",
                     f"{trials_goal} trials, extrapolated", "within 8 default runs"], rows)


def report(fair_dir: Path, trials_goal: int = 24) -> dict:
    solvers = load_fair(fair_dir)
    if not solvers:
        raise SystemExit(f"error: {fair_dir} holds no study (tune/SOLVER/tune.json) and no run (runs/SOLVER-ARM-sK); "
                         f"give the folder the equal-budget commands wrote")
    before, after = ranking(solvers, "default"), ranking(solvers, "tuned")
    text = "\n".join([
        "**The studies** (the same budget for every solver; objective: the best accuracy on the 100 fixed "
        "validation tasks; the test tasks are never built):", "", study_table(solvers),
        "**Tuned against default**, each at its solver's full length (val: the 100 fixed validation tasks that "
        "chose the checkpoint; test: the 600 fixed test tasks, scored once). One seed: ± is the 95% interval "
        "over tasks; several: ± std across seeds (min–max).", "", fair_table(solvers),
        f"Ranking by test accuracy of the solvers with both rows, defaults: {' > '.join(before) or '-'}; tuned: "
        f"{' > '.join(after) or '-'}{' (unchanged)' if before == after else ' (tuning changed the ranking)'}.", "",
        "**Cost of a study** (wall time of its finished trials, pruned ones included, failed ones left out, "
        "against one default run):", "",
        cost_table(solvers, trials_goal)])
    return {"solvers": list(solvers), "ranking_default": before, "ranking_tuned": after, "markdown": text}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fair_dir", type=Path)
    parser.add_argument("--trials-goal", type=int, default=24, help="the study size the cost goal names")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    result = report(args.fair_dir, args.trials_goal)
    print(result["markdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
