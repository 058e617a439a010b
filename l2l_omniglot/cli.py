"""The ``omnimeta`` command line: thin click commands over the library.

Every command parses, calls library functions and prints. A problem the user
can fix (:class:`~l2l_omniglot.errors.OmnimetaError`, or a click usage error)
is printed as one line, ``Error: ...``, with exit status 2 and no traceback.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from l2l_omniglot.config import DEVICES, RunConfig, resolve_config
from l2l_omniglot.data.omniglot import download_omniglot, load_omniglot, resolve_root
from l2l_omniglot.data.splits import SPLITS, make_split
from l2l_omniglot.data.tasks import AUGMENTS
from l2l_omniglot.errors import OmnimetaError
from l2l_omniglot.solvers import SOLVERS
from l2l_omniglot.solvers.transfer import TRANSFER_MODES
from l2l_omniglot.training import Trainer

console = Console(stderr=True)


class OneLineErrors(click.Group):
    """A group whose errors are one line on stderr, exit status 2, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except OmnimetaError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def progress_bar(*extra_columns) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def open_omniglot(data_root, download: bool = False):
    """Load Omniglot, fetching it first when asked; decoding shows a progress bar."""
    if download:
        with progress_bar() as progress:
            task = progress.add_task("download", total=None)
            download_omniglot(data_root, progress=lambda done, total: progress.update(task, completed=done,
                                                                                      total=total or None))
    with progress_bar() as progress:
        task = progress.add_task("decode Omniglot (once, then cached)", total=None, visible=False)

        def on_decode(done, total):
            progress.update(task, completed=done, total=total, visible=True)

        return load_omniglot(data_root, progress=on_decode)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omnimeta")
def cli():
    """omnimeta: few-shot classification on Omniglot with learn2learn.

    Meta-train transfer, FO-MAML or MAML solvers, score them on fixed test tasks
    and compare them side by side.
    """


data_root_option = click.option(
    "--data-root", type=click.Path(path_type=Path), default=None,
    help="Folder with images_background.zip and images_evaluation.zip (or their folders). "
         "Default: $OMNIMETA_DATA, else ~/.cache/omnimeta/omniglot.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")


@cli.group()
def data():
    """Inspect the Omniglot data."""


@data.command("info")
@data_root_option
@click.option("--download", is_flag=True, help="Fetch the canonical archives first if they are missing.")
@json_option
def data_info(data_root, download, as_json):
    """Alphabets, characters and images per set; split sizes; the cache."""
    start = time.perf_counter()
    omniglot = open_omniglot(data_root, download)
    seconds = time.perf_counter() - start
    info = {s.name: s.summary() for s in omniglot.sets}
    info["splits"] = {name: make_split(name, omniglot).sizes() for name in SPLITS}
    info["root"] = str(omniglot.root)
    info["cache"] = {s.name: str(s.cache_path) if s.cache_path else None for s in omniglot.sets}
    info["load_seconds"] = round(seconds, 3)
    if as_json:
        emit_json(info)
        return
    out = Console()
    table = Table(title=f"Omniglot at {omniglot.root}")
    for column in ("set", "alphabets", "characters", "images"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for s in omniglot.sets:
        summary = s.summary()
        table.add_row(s.name, *(f"{summary[k]:,}" for k in ("alphabets", "characters", "images")))
    out.print(table)
    splits = Table(title="Splits (characters)")
    for column in ("split", "train", "val", "test"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, sizes in info["splits"].items():
        splits.add_row(name, *(str(sizes[p]) for p in ("train", "val", "test")))
    out.print(splits)
    for s in omniglot.sets:
        out.print(f"cache ({s.name}): {s.cache_path}")
    out.print(f"load time: {seconds:.2f} s")


def run_options(function):
    """The training options shared by ``run`` and ``compare`` (their names are a contract)."""
    options = [
        click.option("--ways", type=int, default=None, help="Classes per task. [default: 5]"),
        click.option("--shots", type=int, default=None, help="Support images per class. [default: 1]"),
        click.option("--queries", type=int, default=None, help="Query images per class. [default: 5]"),
        click.option("--meta-batch", type=int, default=None, help="Tasks per meta-iteration. [default: 32]"),
        click.option("--iterations", type=int, default=None,
                     help="Meta-iterations. [default: per solver: transfer 3000, fomaml 1500, maml 3000]"),
        click.option("--inner-lr", type=float, default=None,
                     help="Inner-loop (adaptation / fine-tuning) learning rate. [default: 0.4; transfer 0.01]"),
        click.option("--meta-lr", type=float, default=None, help="Adam learning rate of the outer loop. [default: 0.001]"),
        click.option("--train-inner-steps", type=int, default=None, help="Adaptation steps while meta-training. [default: 1]"),
        click.option("--test-inner-steps", type=int, default=None,
                     help="Adaptation steps at validation and test. [default: 3; transfer 10]"),
        click.option("--split", type=click.Choice(SPLITS), default=None, help="Character split. [default: lake]"),
        click.option("--augment", type=click.Choice(AUGMENTS), default=None,
                     help="Meta-train augmentation; rotate adds 90/180/270-degree classes. [default: none]"),
        click.option("--eval-tasks", type=int, default=None, help="Fixed test tasks. [default: 600]"),
        click.option("--val-tasks", type=int, default=None, help="Fixed validation tasks. [default: 200]"),
        click.option("--val-every", type=int, default=None, help="Validate every N iterations. [default: 100]"),
        click.option("--seed", type=int, default=None, help="Seed of the training task stream and weights. [default: 0]"),
        click.option("--device", type=click.Choice(DEVICES), default=None, help="Where to train. [default: auto]"),
        click.option("--transfer-mode", type=click.Choice(TRANSFER_MODES), default=None,
                     help="transfer only: pre-train on all classes, or on task-local labels (HW15). [default: classes]"),
        data_root_option,
        click.option("--download", is_flag=True, help="Fetch the canonical Omniglot archives first if missing."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


TRAINING_KEYS = ("ways", "shots", "queries", "meta_batch", "iterations", "inner_lr", "meta_lr", "train_inner_steps",
                 "test_inner_steps", "split", "augment", "eval_tasks", "val_tasks", "val_every", "seed", "device",
                 "transfer_mode")


def default_out_dir(solver: str) -> Path:
    return Path("runs") / f"{solver}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def train_with_progress(trainer) -> dict:
    """Run a :class:`~l2l_omniglot.training.Trainer` under rich progress bars (loss, accuracy, it/s)."""
    config = trainer.config
    with progress_bar(TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  "
                                 "val {task.fields[val]}  {task.fields[speed]:.2f} it/s")) as progress:
        train = progress.add_task(f"meta-train {config.solver}", total=config.iterations,
                                  completed=trainer.iteration, loss=float("nan"),
                                  acc=float("nan"), val="-", speed=0.0)
        evaluation = {}

        def on_step(iteration, stats, seconds):
            progress.update(train, completed=iteration, loss=stats.loss, acc=stats.accuracy,
                            speed=iteration / max(seconds, 1e-9))

        def on_validation(iteration, score):
            progress.update(train, val=f"{score.accuracy:.3f}")

        def on_eval_start(tasks):
            evaluation["task"] = progress.add_task("meta-test", total=tasks, loss=0.0, acc=0.0, val="-", speed=0.0)

        def on_eval_progress(done):
            progress.advance(evaluation["task"], done)

        return trainer.run(on_step, on_validation, on_eval_start, on_eval_progress)


def result_table(rows: list, title: str) -> Table:
    table = Table(title=title)
    for column in ("solver", "iterations", "train time", "val acc", "test acc (95% CI)", "test tasks"):
        table.add_column(column, justify="left" if column == "solver" else "right")
    for row in rows:
        name = row["solver"] + (f" ({row['transfer_mode']})" if row.get("transfer_mode") else "")
        table.add_row(name, str(row["iterations"]), f"{row['train_seconds']:.0f} s", f"{row['val_accuracy']:.4f}",
                      f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}", str(row["test_tasks"]))
    return table


@cli.command()
@click.option("--solver", type=click.Choice(list(SOLVERS)), default="fomaml", show_default=True,
              help="Which solver to meta-train.")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder. [default: runs/<solver>-<date>-<time>]")
@click.option("--force", is_flag=True, help="Allow writing into a folder that already holds a run.")
@json_option
def run(solver, out_dir, force, as_json, data_root, download, **training):
    """Meta-train a solver, keep its best validated state and score it on the fixed test tasks.

    The run folder gets config.json, metrics.jsonl, checkpoint.pt and result.json.
    """
    config = resolve_config(solver, **{k: training[k] for k in TRAINING_KEYS})
    omniglot = open_omniglot(data_root, download)
    out_dir = out_dir or default_out_dir(solver)
    trainer = Trainer(config, omniglot, out_dir, force)
    result = train_with_progress(trainer)
    if as_json:
        emit_json(result)
        return
    Console().print(result_table([result], f"{config.ways}-way {config.shots}-shot, {config.split} split, "
                                           f"meta-test on {result['test_tasks']} fixed tasks"))
    Console().print(f"run saved in {out_dir}")


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="omnimeta")


__all__ = ["cli", "main", "resolve_root"]
