"""The ``omnimeta`` commands that run many runs: ``tune`` (a study on validation tasks) and ``reproduce``
(a paper's preset with a verdict). Each parses, calls one library function
(:func:`l2l_omniglot.tune.tune`, :func:`l2l_omniglot.reproduce.reproduce`) and prints.
"""
from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.progress import TextColumn
from rich.table import Table

from l2l_omniglot.cli_options import (PluginChoice, SolverFlagsCommand, data_root_option, json_option, open_omniglot,
                                      run_options, threads_option)
from l2l_omniglot.config import DEVICES
from l2l_omniglot.console import ProgressBars, console, emit_json, progress_bar, stdout_console
from l2l_omniglot.presets import PRESETS
from l2l_omniglot.reproduce import MAX_SEEDS, describe_presets, reproduce as reproduce_preset
from l2l_omniglot.solvers import SOLVERS
from l2l_omniglot.solvers.flags import given_settings
from l2l_omniglot.tune import PRUNERS, TuneCallbacks, TuneRequest, tune


class TuneBar(TuneCallbacks):
    """A bar over a study's trials with the best validation accuracy so far."""

    def __init__(self):
        self.progress = progress_bar(TextColumn("{task.fields[status]}"))

    def on_start(self, total, finished) -> None:
        self.progress.start()
        self.task = self.progress.add_task("trials", total=total, completed=finished, status="")

    def on_progress(self, finished, best) -> None:
        self.progress.update(self.task, completed=finished, status=f"best val {best:.4f}" if best is not None else "")

    def on_warning(self, message: str) -> None:
        console.print(f"Warning: {escape(message)}", soft_wrap=True, highlight=False)


@click.command("tune", cls=SolverFlagsCommand)
@click.option("--solver", type=PluginChoice(SOLVERS), required=True,
              help="The solver to tune; its search space is listed by `omnimeta solvers`.")
@click.option("--trials", type=click.IntRange(1, 100_000), required=True,
              help="Finished trials the study should hold in all; running it again adds the missing ones.")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Study folder: study.db (SQLite, unless --storage), one run folder per trial (trial-NNNN), "
                   "tune.json, tune.md, best.json and the plots.")
@click.option("--space", "space", multiple=True, metavar="NAME=LOW:HIGH|NAME=a,b,c",
              help="Search NAME (a solver option or meta_lr, meta_batch, lr_schedule, augment) in this range "
                   "(the declared scale, else linear) or among these values (repeatable).")
@click.option("--storage", default=None, metavar="URL",
              help="Any Optuna RDB storage (postgresql://..., mysql://..., sqlite:///...) to share the study "
                   "between machines. [default: sqlite in --out]")
@click.option("--study", "study_name", default=None, help="The study's name in the storage. [default: --out's name]")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes of this machine sharing the study (the cores are split between them).")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="How poor trials stop early on their validation accuracy (docs/tuning.md).")
@threads_option
@json_option
def tune_command(solver, trials, out_dir, space, storage, study_name, workers, pruner, as_json, data_root, download,
                 **training):
    """Tune a solver's settings on the fixed validation tasks with Optuna (TPE sampler, pruning).

    Each trial is an ordinary run in --out/trial-NNNN, without a test phase. Writes
    tune.json, tune.md, best.json (train it with `omnimeta run --params`) and plots.
    """
    overrides = {}
    for item in space:
        name, equals, value = item.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not NAME=LOW:HIGH or NAME=a,b,c", param_hint="--space")
        overrides[name.strip()] = value
    shared, own = given_settings([solver], training)
    request = TuneRequest(solver, trials, out_dir, shared, own[solver], overrides, storage, study_name, workers,
                          pruner, str(data_root) if data_root else None)
    if download:
        open_omniglot(data_root, download=True)
    bar = TuneBar()
    try:
        report = tune(request, bar)
    finally:
        bar.progress.stop()
    if as_json:
        emit_json(report)
        return
    best = report["best"]
    stdout_console().print(f"best: trial {best['trial']}, validation accuracy [bold]{best['val_accuracy']:.4f}[/] "
                           f"with " + ", ".join(f"{k}={v}" for k, v in best["params"].items()))
    stdout_console().print(f"train it: {best['command']}", soft_wrap=True, highlight=False)
    stdout_console().print(f"study saved in {out_dir} (tune.md, tune.json, best.json, plots)")


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def list_presets(data_root, timed_steps: int, device: str) -> list:
    """``describe_presets`` with a progress bar over the timed presets (``timed_steps`` 0: no estimate, no data)."""
    if not timed_steps:
        return describe_presets()
    omniglot = open_omniglot(data_root)
    with progress_bar() as bars:
        task = bars.add_task("time a few steps of each preset", total=len(list(PRESETS)))
        return describe_presets(omniglot, timed_steps, device, progress=lambda: bars.advance(task))


@click.command("reproduce")
@click.argument("preset", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the presets: paper, row, number, the paper's budget and "
                                                        "the time this machine would need for it.")
@click.option("--timed-steps", type=click.IntRange(0, 100), default=2, show_default=True,
              help="With --list: meta-training steps timed per preset for the estimate (0: no estimate).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of the reproduction: one run folder per seed (seed-K), reproduce.json, reproduce.md.")
@click.option("--seeds", type=click.IntRange(1, MAX_SEEDS), default=1, show_default=True, help="Seeds 0..N-1 to run.")
@click.option("--budget", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Fraction of the paper's meta-training steps to run (below 1 the verdict is 'not comparable').")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--nproc", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Train each seed data-parallel on N local processes (as `omnimeta run --nproc`).")
@click.option("--val-tasks", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Fixed validation tasks that choose each seed's checkpoint (omnimeta's run mechanics, not a paper "
                   "setting; fewer make a short reproduction cheaper).")
@data_root_option
@threads_option
@json_option
def reproduce_command(preset, list_only, timed_steps, out_dir, seeds, budget, device, nproc, val_tasks, data_root,
                      as_json):
    """Run a paper's preset (its own settings, each with a source) and judge ours against the paper's number.

    Seeds run as ordinary run folders OUT/seed-K; the same command again skips
    finished seeds and continues stopped ones. Then OUT/reproduce.json and
    OUT/reproduce.md give ours per seed and across seeds (95% interval), the
    paper's number, the fraction of its budget run and the verdict, with its
    rule. docs/reproduce.md lists the presets and their sources.
    """
    if list_only:
        if preset is not None or out_dir is not None:
            raise click.UsageError("--list lists every preset; drop PRESET and --out")
        rows = list_presets(data_root, timed_steps, "cpu" if device == "auto" else device)
        if as_json:
            emit_json(rows)
            return
        table = Table(title="paper presets (omnimeta reproduce PRESET --out DIR)")
        for column in ("preset", "solver", "paper row", "paper's number", "paper's budget", "est. time here"):
            table.add_column(column)
        for row in rows:
            number = f"{row['paper_accuracy']:.3f}" + (f" ± {row['paper_plus_minus']:.3f}" if row["paper_plus_minus"]
                                                       else "")
            estimate = duration(row["estimate"]["total_seconds"]) if "estimate" in row else "-"
            table.add_row(row["name"], row["solver"], row["row"], number,
                          f"{row['paper_iterations']} {row['budget_unit']}", estimate)
        stdout_console().print(table)
        return
    if preset is None or out_dir is None:
        raise click.UsageError("give a PRESET and --out DIR (or --list)")
    bars = {}

    def on_seed(seed, state):
        console.print(f"seed {seed}: {state}")
    summary = reproduce_preset(preset, out_dir, seeds, budget, device, nproc,
                               str(data_root) if data_root else None,
                               callbacks=lambda seed: bars.setdefault(seed, ProgressBars()), on_seed=on_seed,
                               val_tasks=val_tasks)
    if as_json:
        emit_json(summary)
        return
    low, high = summary["interval95"]
    stdout_console().print(f"{preset}: ours {summary['mean_test_accuracy']:.4f} (95% interval {low:.4f}-{high:.4f}), "
                           f"paper {summary['paper_accuracy']:.4f}, {summary['budget_fraction_run'] * 100:.3g}% of the "
                           f"paper's budget: {summary['verdict']}")
    stdout_console().print(f"written: {Path(out_dir) / 'reproduce.md'} and reproduce.json")
