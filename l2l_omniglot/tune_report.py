"""What a study leaves in its folder, and how ``omnimeta run --params`` reads its best settings back.

``tune.json`` (everything, for scripts) and ``tune.md`` (for people): the
best settings with their validation accuracy, every trial (settings,
validation accuracy, iterations reached, state), the importance of each
setting (Optuna's default evaluator, over the completed trials), the plots
(``history.png``, ``importance.png``, ``parallel.png``: Optuna's matplotlib
plots) and ``best.json`` with the exact ``omnimeta run`` command that trains
the best settings at the solver's full length. Everything is rewritten from
the study itself after every invocation, so it always describes the whole
study, whichever worker or machine ran which trial.
"""
from __future__ import annotations

import json
import shlex
import warnings
from pathlib import Path

from l2l_omniglot.atomic import atomic_path, write_json, write_text
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.registry import split_overrides

#: The states of a trial that count towards ``--trials`` (a FAILed trial is no result, so it is run again).
FINISHED = ("COMPLETE", "PRUNED")
PLOTS = {"history.png": "plot_optimization_history", "importance.png": "plot_param_importances",
         "parallel.png": "plot_parallel_coordinate"}
#: What a study writes into its folder besides its trials (and study.db).
REPORT_FILES = ("tune.json", "tune.md", "best.json", *PLOTS)
#: Settings of a study that best.json does not carry: the budget and the seed belong to the run that trains it.
NOT_CARRIED = ("iterations", "val_every", "seed", "device")


def count_finished(study) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, name) for name in FINISHED)
    return len(study.get_trials(deepcopy=False, states=states))


def trial_rows(study) -> list:
    """Every trial: number, state, settings, validation accuracy (a pruned one's best before it stopped), ..."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value if trial.state.name == "COMPLETE" else max(trial.intermediate_values.values(),
                                                                       default=None)
        rows.append({"number": trial.number, "state": trial.state.name, "params": dict(trial.params),
                     "val_accuracy": value, "iterations": trial.user_attrs.get("iterations", trial.last_step),
                     "run_dir": trial.user_attrs.get("run_dir"), "error": trial.user_attrs.get("error"),
                     "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else None})
    return rows


def importance(study) -> tuple:
    """``(importance by setting, None)``, or ``(None, why not)`` when the completed trials cannot tell."""
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study)), None
    except (RuntimeError, ValueError) as error:  # too few completed trials, or no setting that varied
        return None, str(error).splitlines()[0]


def write_plots(study, out_dir: Path) -> dict:
    """Optuna's matplotlib plots as PNG; a plot that needs more trials than there are is left out (with why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = {}
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = getattr(plots, function)(study)
        except (RuntimeError, ValueError) as error:
            written[name] = f"not drawn: {str(error).splitlines()[0]}"
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(9, 5.5)
        figure.tight_layout()
        with atomic_path(out_dir / name) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        plt.close(figure)
        written[name] = "written"
    return written


def run_command(request, best_path: Path) -> str:
    return shlex.join(["omnimeta", "run", "--solver", request.solver, "--params", str(best_path)])


def write_report(study, request, config, space) -> dict:
    """Write tune.json, tune.md, best.json and the plots into ``request.out_dir``; returns tune.json's dict."""
    out_dir = request.out_dir
    rows = trial_rows(study)
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    best = max(complete, key=lambda row: (row["val_accuracy"], -row["number"]), default=None)
    scores, why_not = importance(study)
    # What the user fixed for the study (not the defaults of today, which a later version may change).
    fixed = {k: getattr(config, k) for k in request.settings if k not in NOT_CARRIED}
    fixed.update({k: v for k, v in config.options.items() if k in request.options})
    best_path = out_dir / "best.json"
    report = {
        "solver": request.solver, "study": request.study_name, "storage": masked_url(request.storage_url),
        "trials_requested": request.trials, "finished": sum(row["state"] in FINISHED for row in rows),
        "states": {state: sum(row["state"] == state for row in rows) for state in sorted({r["state"] for r in rows})},
        "sampler": {"name": "TPESampler", "seed": config.seed, "per_worker": "seed + worker index"},
        "pruner": request.pruner, "objective": "best accuracy on the fixed validation tasks (test tasks unused)",
        "config": config.to_dict(), "space": space.describe(), "best": None, "importance": scores,
        "importance_note": why_not, "trials": rows, "plots": write_plots(study, out_dir),
    }
    if best is not None:
        report["best"] = {"trial": best["number"], "val_accuracy": best["val_accuracy"], "params": best["params"],
                          "run_dir": best["run_dir"], "command": run_command(request, best_path)}
        write_json(best_path, {"solver": request.solver, "study": request.study_name, "trial": best["number"],
                               "val_accuracy": best["val_accuracy"], "params": best["params"], "fixed": fixed,
                               "tuned_iterations": config.iterations, "command": report["best"]["command"]})
    write_json(out_dir / "tune.json", report)
    write_text(out_dir / "tune.md", markdown(report))
    return report


def masked_url(url: str) -> str:
    """A storage URL as it may be shown and written: its password (``user:PASSWORD@host``) replaced by ``***``."""
    head, at, tail = url.rpartition("@")
    scheme, slashes, credentials = head.partition("://")
    if at and slashes and ":" in credentials:
        return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"
    return url


def _value(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    """tune.md: best settings, the command, importance, every trial, the plots."""
    lines = [f"# Tuning {report['solver']} (study {report['study']})", "",
             f"{report['finished']} of {report['trials_requested']} trials finished "
             f"({', '.join(f'{n} {s.lower()}' for s, n in report['states'].items()) or 'none yet'}); "
             f"{report['config']['iterations']} iterations per trial, validated every "
             f"{report['config']['val_every']} on {report['config']['val_tasks']} fixed validation tasks; "
             f"TPE sampler seed {report['sampler']['seed']}, {report['pruner']} pruner. Test tasks are not used.", ""]
    best = report["best"]
    if best is None:
        lines += ["No trial has completed yet.", ""]
    else:
        lines += [f"## Best: trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}", "",
                  "| setting | value |", "| --- | --- |",
                  *(f"| {name} | {_value(value)} |" for name, value in best["params"].items()), "",
                  "Train it at the solver's full length (add `--seed`, `--iterations` as you need):", "",
                  f"    {best['command']}", ""]
    lines += ["## Importance", ""]
    if report["importance"]:
        lines += ["| setting | importance |", "| --- | --- |",
                  *(f"| {name} | {score:.3f} |" for name, score in report["importance"].items()), ""]
    else:
        lines += [f"Not available yet ({report['importance_note']}).", ""]
    names = [dimension["name"] for dimension in report["space"]]
    lines += ["## Trials", "", "| trial | state | val acc | iterations | " + " | ".join(names) + " |",
              "| " + " | ".join(["---"] * (4 + len(names))) + " |"]
    for row in report["trials"]:
        lines.append(f"| {row['number']} | {row['state'].lower()} | {_value(row['val_accuracy'])} | "
                     f"{_value(row['iterations'])} | " + " | ".join(_value(row["params"].get(n)) for n in names) + " |")
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({name})" if status == "written" else f"- {name}: {status}"
              for name, status in report["plots"].items()]
    return "\n".join(lines) + "\n"


def load_params(path: Path, solver: str) -> tuple:
    """``(shared settings, solver options)`` from a study's ``best.json`` for ``omnimeta run --params``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        params, fixed, owner = dict(data["params"]), dict(data.get("fixed", {})), data["solver"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--params {path} is not a study's best.json ({type(error).__name__}); give the "
                          f"best.json that `omnimeta tune` wrote") from None
    if owner != solver:
        raise ConfigError(f"--params {path} holds settings of {owner}, not {solver}; add --solver {owner}")
    return split_overrides({**fixed, **params})


__all__ = ["FINISHED", "count_finished", "load_params", "masked_url", "trial_rows", "write_report"]
