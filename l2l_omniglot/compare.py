"""Several solvers on exactly the same test tasks, with paired differences.

:func:`compare_solvers` is ``omnimeta compare`` as one call: it checks the
runs and the output folder, trains each solver, scores every run on the same
tasks and writes ``compare.json``/``.csv``/``.md`` and ``curves.png``::

    from l2l_omniglot import compare_solvers, resolve_config
    configs = [resolve_config(name, iterations=300) for name in ("fomaml", "protonet")]
    comparison = compare_solvers(configs, "runs/cmp")       # {"title", "rows", "files"}

Its parts, for other uses: :func:`train_isolated` trains one solver in a fresh process (so that its peak
memory is its own) and :func:`score_runs` loads finished runs and scores them
all on one fixed list of test tasks. :func:`compare_rows` puts the two
together into the rows of ``omnimeta compare``'s table::

    from l2l_omniglot.compare import score_runs, compare_rows
    rows = compare_rows(score_runs(["runs/fomaml", "runs/maml"], omniglot))

Runs of one solver with the same settings but different seeds are one row
(:func:`group_runs`): their mean, the spread across seeds, and the interval
over tasks of the seed-averaged per-task accuracy.
"""
from __future__ import annotations

import json
import math
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional

import torch

from l2l_omniglot.atomic import check_not_an_input, check_output_folder, read_json_object
from l2l_omniglot.checkpoint import load_checkpoint, load_solver
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import load_omniglot, loaded
from l2l_omniglot.errors import ConfigError, DataError, OmnimetaError, first_line
from l2l_omniglot.evaluation import PairedDifference, Score, no_progress, per_task_accuracy
from l2l_omniglot.reporting import write_compare_files
from l2l_omniglot.run_folder import check_out_dir
from l2l_omniglot.run_tasks import RunTasks
from l2l_omniglot.solvers import solver_label
from l2l_omniglot.launch import RunRequest, run_training
from l2l_omniglot.precision import computing_in
from l2l_omniglot.process import freeze_imports

#: What must agree for two runs to be scored on the same tasks.
TASK_KEYS = ("ways", "shots", "queries", "split", "image_size")
#: What may differ between the runs of one row: the seed, and where a run ran.
SEED_KEYS = ("seed", "device")


def _train_child(config: dict, data_root: Optional[str], out_dir: str) -> None:
    freeze_imports()
    run_training(RunRequest(Path(out_dir), RunConfig.from_dict(config), force=True, data_root=data_root))


def metric_count(run_dir: Path) -> int:
    path = Path(run_dir) / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


def train_isolated(config: RunConfig, data_root, out_dir: Path,
                   on_progress: Callable[[int], None] = lambda done: None) -> dict:
    """Train and test ``config`` in a fresh process; report iterations done while it runs."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_train_child, args=(config.to_dict(), str(data_root) if data_root else None,
                                                         str(out_dir)))
    process.start()
    while process.is_alive():
        process.join(0.5)
        on_progress(metric_count(out_dir))
    if process.exitcode != 0 or not (Path(out_dir) / "result.json").is_file():
        raise OmnimetaError(f"training {config.solver} failed (exit status {process.exitcode}); "
                            f"rerun it alone with `omnimeta run --solver {config.solver}` to see why")
    on_progress(metric_count(out_dir))
    return json.loads((Path(out_dir) / "result.json").read_text())


def run_label(config: RunConfig) -> str:
    """How tables name a run: its solver's label, its augmentation and precision if not the plain ones
    (``fomaml +rotate bfloat16``)."""
    augment = f" +{config.augment}" if config.augment != "none" else ""
    precision = f" {config.precision}" if config.precision != "float32" else ""
    return f"{solver_label(config)}{augment}{precision}"


@dataclass
class ScoredRun:
    run_dir: Path
    config: RunConfig
    result: dict
    per_task: torch.Tensor

    @property
    def label(self) -> str:
        return run_label(self.config)


def load_run(run_dir: Path, device="cpu") -> tuple:
    """``(config, solver)`` from a run folder's best checkpoint, for any installed solver."""
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device)
    return config, solver


def score_runs(run_dirs: list, omniglot, eval_tasks: Optional[int] = None, device: str = "cpu",
               on_progress: Callable[[int], None] = lambda done: None) -> list:
    """Score every run on the same fixed test tasks (those of the first run's task shape)."""
    given = [Path(d).resolve() for d in run_dirs]
    twice = next((d for i, d in enumerate(run_dirs) if given[i] in given[:i]), None)
    if twice is not None:
        raise ConfigError(f"{twice} is given twice; give each run once (runs of several seeds are separate folders)")
    runs = [(Path(d), *load_run(d, device)) for d in run_dirs]
    reference = runs[0][1]
    for run_dir, config, _ in runs[1:]:
        differ = [k for k in TASK_KEYS if getattr(config, k) != getattr(reference, k)]
        if differ:
            raise ConfigError(f"{run_dir} differs from {runs[0][0]} in {', '.join(differ)}; "
                              f"compare runs of the same task shape")
    shape = RunConfig.from_dict({**reference.to_dict(), "eval_tasks": eval_tasks or reference.eval_tasks})
    tasks = RunTasks.build(shape, omniglot, phases=("test",)).test_tasks
    scored = []
    for run_dir, config, solver in runs:
        with computing_in(config.precision, device):
            per_task = per_task_accuracy(solver, tasks, progress=on_progress)
        scored.append(ScoredRun(run_dir, config, read_result(run_dir), per_task))
    return scored


def seed_group_key(label: str, config: RunConfig) -> str:
    """What runs of one row share: the label and every setting but :data:`SEED_KEYS` (``bench/results_table.py``
    groups run folders by it too)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in SEED_KEYS}
    return label + " " + json.dumps(settings, sort_keys=True, default=str)


def group_runs(scored: list) -> list:
    """The runs as groups of one solver label and the same settings but the seed (:data:`SEED_KEYS`), in order."""
    groups = {}
    for run in scored:
        groups.setdefault(seed_group_key(run.label, run.config), []).append(run)
    return list(groups.values())


def _mean(values: list):
    """The mean of ``values``, or None when one of them is missing (a run folder without result.json)."""
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def _group_result(group: list) -> dict:
    """The result.json numbers of a row: the run's own, or for several seeds their mean (peak memory: the largest)."""
    results = [run.result for run in group]
    if len(group) == 1:
        result = results[0]
        return {"iterations": result.get("iterations", group[0].config.iterations),
                **{k: result.get(k) for k in ("train_seconds", "iterations_per_second", "val_accuracy",
                                              "peak_rss_mb")}}
    iterations = {r.get("iterations", run.config.iterations) for r, run in zip(results, group)}
    peaks = [r.get("peak_rss_mb") for r in results]
    return {"iterations": iterations.pop() if len(iterations) == 1 else group[0].config.iterations,
            **{k: _mean([r.get(k) for r in results]) for k in ("train_seconds", "iterations_per_second",
                                                                "val_accuracy")},
            "peak_rss_mb": None if None in peaks else max(peaks)}


def _seed_spread(group: list) -> dict:
    """How a row's runs differ across seeds: their count and seeds, and the sample std, min and max of their test
    accuracy (the std is None for one run)."""
    accuracies = [run.per_task.double().mean().item() for run in group]
    mean = sum(accuracies) / len(accuracies)
    std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) if len(group) > 1 else None
    return {"seeds": len(group), "seed_values": [run.config.seed for run in group], "test_accuracy_std": std,
            "test_accuracy_min": min(accuracies), "test_accuracy_max": max(accuracies)}


def _settings(config: RunConfig) -> dict:
    """A run's settings as one flat mapping: the shared ones and the solver's options (by name)."""
    return {**{k: v for k, v in config.to_dict().items() if k != "options"}, **config.options}


def row_labels(groups: list) -> list:
    """How each row is named: its label, and where runs of one label make several rows, also the run folder and
    the settings in which those rows differ (``fomaml (runs/a; inner_lr=0.1)``)."""
    labels = [group[0].label for group in groups]
    named = []
    for group, label in zip(groups, labels):
        rivals = [_settings(other[0].config) for other, other_label in zip(groups, labels) if other_label == label]
        if len(rivals) == 1:
            named.append(label)
            continue
        keys = sorted(key for key in set().union(*rivals) if key not in SEED_KEYS
                      and len({json.dumps(r.get(key), sort_keys=True, default=str) for r in rivals}) > 1)
        own = _settings(group[0].config)
        folder = group[0].run_dir.name + (f" and {len(group) - 1} more" if len(group) > 1 else "")
        named.append(f"{label} ({folder}" + "".join(f"; {key}={own.get(key)}" for key in keys) + ")")
    return named


def compare_rows(scored: list) -> list:
    """One row per solver and settings, with its paired difference to the best row on the same tasks.

    Runs that differ only in their seed are one row (:func:`group_runs`): its
    test accuracy is the mean over seeds, its interval the 95% interval over
    tasks of the per-task accuracy averaged over the seeds, and the paired
    difference to the best row uses those seed-averaged per-task accuracies.
    When some row has several seeds, every row also gets ``seeds``,
    ``seed_values`` and the spread across seeds (``test_accuracy_std``, the
    sample standard deviation, and ``test_accuracy_min``/``max``); otherwise
    the rows are one per run, exactly as without seeds.
    """
    groups = group_runs(scored)
    per_task = [torch.stack([run.per_task.double() for run in group]).mean(dim=0) for group in groups]
    best = max(range(len(groups)), key=lambda i: per_task[i].mean().item())
    with_seeds = any(len(group) > 1 for group in groups)
    labels = row_labels(groups)
    rows = []
    for i, group in enumerate(groups):
        score = Score.of(per_task[i])
        difference = PairedDifference.of(per_task[i], per_task[best])
        rows.append({
            "solver": labels[i],
            "run": ", ".join(str(run.run_dir) for run in group),
            **_group_result(group),
            "test_accuracy": score.accuracy,
            "test_ci95": score.ci95,
            "test_tasks": score.tasks,
            "best": i == best,
            "diff_to_best": difference.mean,
            "diff_ci95": difference.ci95,
            "significant": difference.significant if i != best else False,
            **(_seed_spread(group) if with_seeds else {}),
        })
    return [_ordered(row) for row in rows]


#: The keys of a row in the order of ``compare.csv``'s columns, as before seeds were grouped (their keys come last).
ROW_KEYS = ("solver", "run", "iterations", "train_seconds", "iterations_per_second", "val_accuracy", "test_accuracy",
            "test_ci95", "test_tasks", "peak_rss_mb", "best", "diff_to_best", "diff_ci95", "significant")


def _ordered(row: dict) -> dict:
    return {**{k: row[k] for k in ROW_KEYS}, **{k: v for k, v in row.items() if k not in ROW_KEYS}}


def run_curves(scored: list) -> dict:
    """Each run's validation curve (:func:`curves`), named by its label, and its seed where a label repeats."""
    labels = [run.label for run in scored]
    return {(f"{run.label} (seed {run.config.seed})" if labels.count(run.label) > 1 else run.label):
            curves(run.run_dir) for run in scored}


def read_result(run_dir: Path) -> dict:
    """A run's ``result.json`` (``{}`` when it has none); a damaged one is a DataError naming it."""
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return {}
    return read_json_object(path, f"finish the run again with `omnimeta run --resume {run_dir}`, or leave it out "
                                  f"of --runs")


def curves(run_dir: Path) -> dict:
    """Validation accuracy against iterations and seconds, from ``metrics.jsonl``.

    A missing file, or a line that is not a metrics record (torn by a kill,
    edited), is a DataError naming the file, the line and the fix.
    """
    path = Path(run_dir) / "metrics.jsonl"
    fix = f"finish the run with `omnimeta run --resume {run_dir}` (it rebuilds what it can), or leave it out"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{run_dir} has no metrics.jsonl, which its curves come from; {fix}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path} cannot be read ({first_line(error, 120)}); {fix}") from None
    iterations, seconds, accuracy = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
            if "val_accuracy" in record:
                point = (record["iteration"], record["seconds"], record["val_accuracy"])
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point):
                    raise TypeError("a value is not a number")
                iterations.append(point[0])
                seconds.append(point[1])
                accuracy.append(point[2])
        except (ValueError, TypeError, KeyError) as error:
            raise DataError(f"{path}, line {number}: not a metrics record ({first_line(error, 80)}; torn by a "
                            f"kill?); {fix}") from None
    return {"iterations": iterations, "seconds": seconds, "val_accuracy": accuracy}


#: What ``compare_solvers`` writes into its folder (see ``reporting.write_compare_files``).
COMPARE_FILES = ("compare.json", "compare.csv", "compare.md", "curves.png")


def check_comparison(configs: list, out_dir: Path, runs: list, force: bool) -> None:
    """Refuse, before any data is loaded, a comparison that would overwrite or fail on a given run."""
    out_dir = Path(out_dir)
    if not configs and not runs:
        raise ConfigError("nothing to compare: give --solvers or --runs")
    if (out_dir / "compare.json").is_file() and not force:
        raise ConfigError(f"--out {out_dir} already holds a comparison; choose another folder or add --force")
    for run_dir in runs:  # an output that is an input is refused even with --force
        check_not_an_input(out_dir, "--out", {"--runs": run_dir})
    check_output_folder(out_dir, force, "--out", COMPARE_FILES)
    for config in configs:
        check_out_dir(out_dir / config.solver, force)
    for run_dir in runs:  # what the table and curves.png read from each run, before any task is scored
        load_checkpoint(Path(run_dir) / "checkpoint.pt")
        curves(run_dir)
        read_result(run_dir)


def compare_solvers(configs: list, out_dir: Path, runs: tuple = (), omniglot=None, data_root=None,
                    eval_tasks: Optional[int] = None, force: bool = False, device: str = "cpu",
                    progress: Callable[[str, Optional[int]], ContextManager] = no_progress) -> dict:
    """Train each config's solver into ``out_dir/<solver>``, score those and ``runs`` on the same test tasks,
    and write ``compare.json``, ``compare.csv``, ``compare.md`` and ``curves.png`` into ``out_dir``.

    Returns ``{"title", "rows", "files"}``: the rows of :func:`compare_rows`,
    the title naming the task shape, and the paths written. ``omniglot`` is
    the data, a function that loads it, or None for ``data_root`` (default
    ``$OMNIMETA_DATA``); it is loaded after every check, so a wrong input
    fails in one line before any work. Each solver trains in its own process
    (:func:`train_isolated`) on ``data_root``. ``progress(description,
    total)`` gives a context manager whose value is told how much more is
    done; ``omnimeta compare`` draws it as progress bars.
    """
    out_dir, runs = Path(out_dir), [Path(run) for run in runs]
    check_comparison(configs, out_dir, runs, force)
    data = loaded(omniglot if omniglot is not None else (lambda: load_omniglot(data_root)))
    trained = []
    for config in configs:
        run_dir = out_dir / config.solver
        with progress(f"meta-train {config.solver}", config.iterations) as advance:
            reported = [0]

            def on_progress(done: int) -> None:
                advance(done - reported[0])
                reported[0] = done

            train_isolated(config, data_root, run_dir, on_progress)
        trained.append(run_dir)
    with progress("score on the fixed test tasks", None) as advance:
        scored = score_runs(trained + runs, data, eval_tasks, device, advance)
    rows = compare_rows(scored)
    reference = scored[0].config
    title = (f"{reference.ways}-way {reference.shots}-shot, {reference.split} split, "
             f"{rows[0]['test_tasks']} fixed test tasks")
    files = write_compare_files(out_dir, rows, title, run_curves(scored))
    return {"title": title, "rows": rows, "files": [str(path) for path in files]}
