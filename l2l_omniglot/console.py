"""How the command line talks to a terminal: one-line errors, progress bars, tables, JSON.

Only the command-line modules (``cli``, ``cli_options``, ``cli_studies``) import this module. Errors a user can fix are one
line on stderr with exit status 2 (:class:`OneLineErrors`); long work shows
rich progress bars on stderr (:class:`LazyProgress`, :class:`ProgressBars`),
and results go to stdout as tables or, with ``--json``, as JSON.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from l2l_omniglot.distributed import reports_error
from l2l_omniglot.errors import OmnimetaError
from l2l_omniglot.run_folder import Interrupted
from l2l_omniglot.callbacks import RunCallbacks

console = Console(stderr=True)


def stdout_console() -> Console:
    """Tables go to stdout; when that is a file or a pipe, don't squeeze them into 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside the training loop (which saves and stops on its own): stop like Ctrl-C, 128 + it."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = int(signum)


#: Signals that stop a command as Ctrl-C does (the training loop saves on them itself, see distributed.STOP_SIGNALS).
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum, frame):
    raise Terminated(signum)


class OneLineErrors(click.Group):
    """A group whose errors are one line on stderr, exit status 2, never a traceback.

    In a distributed run every rank fails alike on bad input, so only rank 0
    prints it; a failure of a rank's own (see ``distributed.RankError``) is
    printed by that rank. SIGTERM and SIGHUP are interrupts, as Ctrl-C: a run saves and
    says how to resume (the training loop's own handler), anything else stops
    with ``Aborted.`` and status 128 + the signal.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        def fail(message: str, error: BaseException, status: int):
            if reports_error(error):
                click.echo(message, err=True)
            sys.exit(status)

        on_main_thread = threading.current_thread() is threading.main_thread()
        previous = {signum: signal.signal(signum, _terminate) for signum in TERMINATING_SIGNALS} \
            if on_main_thread else {}
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            fail(f"Error: {error.format_message()}", error, error.exit_code)
        except Interrupted as error:
            fail(str(error), error, error.exit_code)
        except OmnimetaError as error:
            fail(f"Error: {error}", error, error.exit_code)
        except (click.Abort, KeyboardInterrupt) as error:
            terminated = error if isinstance(error, Terminated) else error.__cause__
            fail("Aborted.", error, 128 + (terminated.signum if isinstance(terminated, Terminated) else signal.SIGINT))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


class LazyProgress:
    """A progress bar that appears with the first progress report, so errors found before any work stay one line."""

    def __init__(self, description: str, total=None):
        self.description, self.total, self.bar = description, total, None

    def __call__(self, done: int) -> None:
        if self.bar is None:
            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total)
        self.bar.advance(self.task, done)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def progress_bar(*extra_columns) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


class ProgressBars(RunCallbacks):
    """A run's progress as rich bars: decoding, meta-training (loss, accuracy, it/s), meta-testing."""

    def __init__(self):
        self.progress = None

    def _bars(self) -> Progress:
        if self.progress is None:
            self.progress = progress_bar(TextColumn("{task.fields[status]}"))
            self.progress.start()
        return self.progress

    def on_decode(self, done: int, total: int) -> None:
        bars = self._bars()
        if not hasattr(self, "decode"):
            self.decode = bars.add_task("decode Omniglot (once, then cached)", total=total, status="")
        bars.update(self.decode, completed=done, total=total)

    def on_start(self, trainer) -> None:
        config = trainer.config
        self.val = "-"
        self.first_iteration, self.start = trainer.iteration, time.perf_counter()
        self.train = self._bars().add_task(f"meta-train {config.solver}", total=config.iterations,
                                           completed=trainer.iteration, status="")

    def on_step(self, iteration, stats, seconds) -> None:
        speed = (iteration - self.first_iteration) / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.train, completed=iteration, status=f"loss {stats.loss:.3f}  acc "
                                                                     f"{stats.accuracy:.3f}  val {self.val}  "
                                                                     f"{speed:.2f} it/s")

    def on_validation(self, iteration, score) -> None:
        self.val = f"{score.accuracy:.3f}"

    def on_eval_start(self, tasks) -> None:
        self.eval = self.progress.add_task("meta-test", total=tasks, status="")

    def on_eval_progress(self, done) -> None:
        self.progress.advance(self.eval, done)

    def on_finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_warning(self, message: str) -> None:
        console.print(f"Warning: {escape(message)}", soft_wrap=True, highlight=False)


def result_table(rows: list, title: str) -> Table:
    table = Table(title=title)
    for column in ("solver", "iterations", "train time", "val acc", "test acc (95% CI)", "test tasks"):
        table.add_column(column, justify="left" if column == "solver" else "right")
    for row in rows:
        table.add_row(row.get("label", row["solver"]), str(row["iterations"]), f"{row['train_seconds']:.0f} s",
                      f"{row['val_accuracy']:.4f}", f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}",
                      str(row["test_tasks"]))
    return table


def options_table(options: list, space: dict = None) -> Table:
    """A plugin's declared options (``OptionSpec.describe()`` rows) as a borderless table.

    ``space`` (option name -> its tuning range as text) adds a ``tune`` column, as for solvers.
    """
    table = Table(show_header=True, box=None, padding=(0, 2))
    columns = ("option", "type", "default", "flag") + (("tune",) if space is not None else ()) + ("what",)
    for column in columns:
        table.add_column(column)
    for spec in options:
        kind = "|".join(spec["choices"]) if spec["choices"] else spec["type"]
        tuned = (space.get(spec["name"], ""),) if space is not None else ()
        table.add_row(spec["name"], kind, "auto" if spec["default"] is None else str(spec["default"]),
                      spec["flag"] or "", *tuned, escape(spec["help"]))
    return table


def show_plugins(rows: list, details, as_json: bool) -> None:
    """``omnimeta solvers`` / ``benchmarks``: each plugin's name, package and description, then ``details(row)``
    (lines or tables); a plugin that cannot be loaded shows its error instead; ``as_json``: the rows as JSON."""
    if as_json:
        emit_json(rows)
        return
    out = stdout_console()
    for row in rows:
        if "error" in row:
            out.print(f"[bold red]{row['name']}[/] ({row['package']}): {escape(row['error'])}")
            continue
        out.print(f"[bold]{row['name']}[/] ({row['package']}): {escape(row['description'])}")
        for line in details(row):
            out.print(line)
        out.print()


def progress_bars(description: str, total=None) -> LazyProgress:
    """The progress factory of library calls (``compare_solvers``): one rich bar per piece of work."""
    return LazyProgress(description, total)
