"""The ``omnimeta`` command line: thin click commands over the library.

Every command parses, calls library functions and prints. A problem the user
can fix (:class:`~l2l_omniglot.errors.OmnimetaError`, or a click usage error)
is printed as one line, ``Error: ...``, with exit status 2 and no traceback.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table

from l2l_omniglot.atomic import check_not_an_input, check_output_folder
from l2l_omniglot.checkpoint import load_checkpoint
from l2l_omniglot.compare import compare_rows, curves, read_result, run_curves, score_runs, train_isolated
from l2l_omniglot.config import DEVICES, LR_SCHEDULES, MAX_EVALUATION_TASKS, RunConfig
from l2l_omniglot.data.omniglot import download_omniglot, load_omniglot
from l2l_omniglot.data.splits import SPLITS, make_split
from l2l_omniglot.data.tasks import AUGMENTS
from l2l_omniglot.distributed import BACKENDS, DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, choose_backend, launched_as_rank, reports_error
from l2l_omniglot.errors import ConfigError, OmnimetaError
from l2l_omniglot.evaluation import HUMAN_LAKE20_ERROR
from l2l_omniglot.reporting import compare_table, write_compare_files
from l2l_omniglot.scoring import BENCHMARKS, check_evaluate_options, check_predict_paths, evaluate_run, predict_folder
from l2l_omniglot.solvers import SOLVERS, describe_solvers, resolve_config
from l2l_omniglot.threads import use_threads
from l2l_omniglot.training import (Interrupted, RunCallbacks, RunFolderLock, RunRequest, check_out_dir,
                                   load_saved_state, run_training)

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


def open_omniglot(data_root, download: bool = False):
    """Load Omniglot, fetching it first when asked; decoding shows a progress bar."""
    if download:
        with progress_bar() as progress:
            task = progress.add_task("download", total=None)
            download_omniglot(data_root, progress=lambda done, total: progress.update(task, completed=done,
                                                                                      total=total or None))
    shown = {}

    def on_decode(done, total):
        if "bar" not in shown:  # only a first, uncached load decodes; a cached one shows nothing
            shown["bar"] = progress_bar()
            shown["bar"].start()
            shown["task"] = shown["bar"].add_task("decode Omniglot (once, then cached)")
        shown["bar"].update(shown["task"], completed=done, total=total)

    try:
        return load_omniglot(data_root, progress=on_decode)
    finally:
        if "bar" in shown:
            shown["bar"].stop()


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omnimeta")
def cli():
    """omnimeta: few-shot classification on Omniglot with learn2learn.

    Meta-train few-shot solvers (built-in or plugins: `omnimeta solvers`), score
    them on fixed test tasks and compare them side by side.
    """


data_root_option = click.option(
    "--data-root", type=click.Path(path_type=Path), default=None,
    help="Folder with images_background.zip and images_evaluation.zip (or their folders). "
         "Default: $OMNIMETA_DATA, else ~/.cache/omnimeta/omniglot.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
threads_option = click.option(
    "--threads", type=click.IntRange(1, 1024), default=None, expose_value=False,
    callback=lambda context, param, value: use_threads(value),
    help="Torch threads (per rank with --nproc). Default: $OMNIMETA_THREADS, else the cores this process may use "
         "(shared by the --nproc ranks). The tasks of a meta-batch run in parallel, one torch thread each, so "
         "another busy program slows a run down by its share of the CPU only (docs/results.md, busy machine); "
         "the numbers are the same for any count.")


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
    out = stdout_console()
    table = Table(title=f"Omniglot at {omniglot.root}")
    for column in ("set", "alphabets", "characters", "images"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for s in omniglot.sets:
        summary = s.summary()
        table.add_row(s.name, *(f"{summary[k]:,}" for k in ("alphabets", "characters", "images")))
    out.print(table)
    splits = Table(title="Splits (classes)")
    for column in ("split", "train", "val", "test"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, sizes in info["splits"].items():
        splits.add_row(name, *(str(sizes[p]) for p in ("train", "val", "test")))
    out.print(splits)
    for s in omniglot.sets:
        out.print(f"cache ({s.name}): {s.cache_path}")
    out.print(f"load time: {seconds:.2f} s")


# -- shared settings and solver options --------------------------------------------------------------
def shared_default_help(key: str) -> str:
    """`` [default: V; solver W ...]`` from RunConfig and the solvers' own defaults, so help cannot drift."""
    own = []
    for name in SOLVERS:
        try:
            defaults = SOLVERS[name].defaults
        except ConfigError:
            continue  # a broken plugin is reported when it is used, not in everyone's --help
        if key in defaults:
            own.append(f"{name} {defaults[key]}")
    return f" [default: {getattr(RunConfig(), key)}" + ("; " + ", ".join(own) if own else "") + "]"


def solver_flags() -> dict:
    """Flags that solvers keep for their options (``--inner-lr``): click parameter name -> spec and users."""
    flags = {}
    for name in SOLVERS:
        try:
            specs = SOLVERS[name].Options.specs()
        except ConfigError:
            continue
        for spec in specs:
            if spec.flag:
                declaration = spec.flag.split("/")[0].lstrip("-").replace("-", "_")
                entry = flags.setdefault(declaration, {"spec": spec, "solvers": {}})
                entry["solvers"][name] = spec
    return flags


def solver_flag_options(flags: dict) -> list:
    options = []
    for param, entry in flags.items():
        spec = entry["spec"]
        users = entry["solvers"]
        defaults = ", ".join(f"{name} {'auto' if s.default is None else s.default}" for name, s in users.items())
        text = f"{spec.help} Solver option {spec.name} of {', '.join(users)} [default: {defaults}]."
        if "/" in spec.flag:
            options.append(click.option(spec.flag, param, default=None, help=text))
        else:
            kind = click.Choice(spec.choices) if spec.choices else {int: int, float: float, str: str}[spec.type]
            options.append(click.option(spec.flag, param, type=kind, default=None, help=text))
    return options


SOLVER_FLAGS = solver_flags()


def parse_option_values(values: tuple) -> dict:
    """``--option NAME=VALUE`` (or ``SOLVER.NAME=VALUE``) as ``{(solver or None, name): value}``."""
    parsed = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE (see `omnimeta solvers` for the options)",
                                     param_hint="--option")
        solver, dot, option = name.strip().rpartition(".")
        key = (solver if dot else None, option)
        if key in parsed:
            raise click.BadParameter(f"{name.strip()} is given twice ({name.strip()}={parsed[key]} and {item}); give "
                                     f"each option once", param_hint="--option")
        parsed[key] = value
    return parsed


def solver_options(solvers: list, flag_values: dict, option_values: dict) -> dict:
    """Each solver's own options from the kept flags and ``--option``; a value no solver takes is an error."""
    chosen = {name: {} for name in solvers}
    for param, value in flag_values.items():
        takers = [name for name in solvers if name in SOLVER_FLAGS[param]["solvers"]]
        flag = SOLVER_FLAGS[param]["spec"].flag
        if not takers:
            raise ConfigError(f"{flag} does not apply to {', '.join(solvers)}; drop it (`omnimeta solvers` lists "
                              f"each solver's options)")
        for name in takers:
            chosen[name][SOLVER_FLAGS[param]["solvers"][name].name] = value
    for (target, option), value in option_values.items():
        if target is not None and target not in chosen:
            raise ConfigError(f"--option {target}.{option}: {target} is not among the solvers here "
                              f"({', '.join(solvers)})")
        takers = [target] if target else [n for n in solvers if option in {s.name for s in SOLVERS[n].Options.specs()}]
        if not takers:
            takers = solvers  # let the solver name what it does accept
        for name in takers:
            if option in chosen[name]:  # a kept flag, or NAME= and SOLVER.NAME=, for the same setting
                raise ConfigError(f"the option {option} of {name} is given twice (a flag and --option, or NAME= "
                                  f"and {name}.NAME=); give it once")
            chosen[name][option] = value
    return chosen


def run_options(function):
    """The training options shared by ``run`` and ``compare`` (their names are a contract)."""
    def shared(name: str, kind, text: str, **extra):
        return click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None,
                            help=text + shared_default_help(name), **extra)

    # Plain types: RunConfig.validate() checks the ranges, with the same words for the CLI and the library.
    options = [
        shared("ways", int, "Classes per task."),
        shared("shots", int, "Support images per class."),
        shared("queries", int, "Query images per class."),
        shared("meta_batch", int, "Tasks per meta-iteration."),
        shared("iterations", int, "Meta-iterations."),
        shared("meta_lr", float, "Adam learning rate of the outer loop."),
        shared("lr_schedule", click.Choice(LR_SCHEDULES), "Meta learning rate: cosine-annealed to zero over the "
                                                          "run, or constant."),
        shared("split", click.Choice(SPLITS), "Class split."),
        shared("augment", click.Choice(AUGMENTS), "Meta-train augmentation: rotate adds 90/180/270-degree classes; "
                                                  "distort draws each image under a small random affine map."),
        shared("eval_tasks", int, "Fixed test tasks."),
        shared("val_tasks", int, "Fixed validation tasks."),
        shared("val_every", int, "Validate every N iterations."),
        shared("seed", int, "Seed of the training task stream and weights."),
        shared("device", click.Choice(DEVICES), "Where to train."),
        *solver_flag_options(SOLVER_FLAGS),
        click.option("--option", "option_values", multiple=True, metavar="NAME=VALUE",
                     help="A solver's own option (repeatable); `omnimeta solvers` lists them. In compare, "
                          "SOLVER.NAME=VALUE sets it for one solver only."),
        data_root_option,
        click.option("--download", is_flag=True, help="Fetch the canonical Omniglot archives first if missing."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def configs_from_options(solvers: list, training: dict) -> list:
    """One resolved RunConfig per solver from the parsed shared settings, kept flags and ``--option``."""
    shared = {name: training.pop(name) for name in RunConfig.shared_names() if name in training}
    option_values = parse_option_values(training.pop("option_values"))
    flags = {param: training.pop(param) for param in SOLVER_FLAGS if training.get(param) is not None}
    own = solver_options(solvers, flags, option_values)
    return [resolve_config(name, options=own[name], **shared) for name in solvers]


def given_training_options(training: dict) -> list:
    """The training options a user typed (to refuse them where they would be ignored)."""
    given = [name for name in RunConfig.shared_names() if training.get(name) is not None]
    given += [param for param in SOLVER_FLAGS if training.get(param) is not None]
    given += ["option"] if training.get("option_values") else []
    return ["--" + name.replace("_", "-") for name in given]


def default_out_dir(solver: str) -> Path:
    return Path("runs") / f"{solver}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


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


@cli.command()
@click.option("--solver", type=click.Choice(list(SOLVERS)), default="fomaml", show_default=True,
              help="Which solver to meta-train (`omnimeta solvers` lists them with their options).")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder. [default: runs/<solver>-<date>-<time>]")
@click.option("--force", is_flag=True, help="Allow writing into a folder that already holds a run (replacing it).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Save the resumable state (state.pt) every N iterations.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder from its saved state, with its own config and data.")
@click.option("--nproc", type=click.IntRange(1, 256), default=None,
              help="Train data-parallel on N processes of this machine (PyTorch's elastic launcher). The result "
                   "equals one process's only up to the order of floating-point sums: within 1e-5 after a few "
                   "steps, drifting with more (about 1e-3 in the loss and 0.02 in test accuracy after 60 steps "
                   "of meta-batch 16). Under torchrun leave it out. See docs/distributed.md. [default: 1]")
@click.option("--max-restarts", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --nproc: restart the ranks up to K times when one dies; they continue from the last "
                   "saved state (see --checkpoint-every).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="torch.distributed backend for several ranks: auto is nccl on GPUs (one per rank), gloo on the CPU.")
@click.option("--dist-timeout", type=click.FloatRange(min=0, max=MAX_TIMEOUT_S, min_open=True),
              default=DEFAULT_TIMEOUT_S,
              show_default=True,
              help="Seconds a rank waits for the rendezvous, or for the other ranks, before it stops with an error.")
@threads_option
@json_option
def run(solver, out_dir, force, checkpoint_every, resume_dir, nproc, max_restarts, backend, dist_timeout, as_json,
        data_root, download, **training):
    """Meta-train a solver, keep its best validated state and score it on the fixed test tasks.

    The run folder gets config.json, metrics.jsonl, checkpoint.pt (best validated
    state), state.pt (resumable) and result.json. A run stopped by Ctrl-C, SIGTERM, SIGHUP or a
    crash continues with --resume RUN_DIR and ends with the same numbers.
    """
    nproc = nproc or 1
    if max_restarts and nproc == 1:
        raise click.UsageError("--max-restarts restarts the ranks of --nproc N (N >= 2); add --nproc or drop it")
    if resume_dir is not None:
        given = given_training_options(training) + (["--out"] if out_dir is not None else [])
        if given:
            raise click.UsageError(f"--resume continues with the run's own config; drop {', '.join(given)}")
        config, _ = load_saved_state(resume_dir)
        RunFolderLock.check(resume_dir)  # another process working there is refused now, not after loading data
        request = RunRequest(resume_dir, resume=True, checkpoint_every=checkpoint_every,
                             data_root=str(data_root) if data_root else None)
    else:
        (config,) = configs_from_options([solver], training)
        out_dir = out_dir or default_out_dir(solver)
        if not launched_as_rank():  # a torchrun rank leaves it to rank 0, which can tell a restart from a new run
            check_out_dir(out_dir, force)  # before the data is loaded; the run checks again as it starts
        request = RunRequest(out_dir, config, force=force,
                             checkpoint_every=checkpoint_every, data_root=str(data_root) if data_root else None)
    request.nproc, request.max_restarts, request.backend, request.dist_timeout = nproc, max_restarts, backend, \
        dist_timeout
    if nproc > 1:
        choose_backend(config.device, backend, local_rank=nproc - 1)
    if download:
        open_omniglot(data_root, download=True)
    result = run_training(request, ProgressBars())
    if result is None:  # a rank other than 0 under torchrun
        return
    if as_json:
        emit_json(result)
        return
    stdout_console().print(result_table([result], f"{config.ways}-way {config.shots}-shot, {config.split} split, "
                                                  f"meta-test on {result['test_tasks']} fixed tasks"))
    stdout_console().print(f"run saved in {request.out_dir}")


@cli.command("solvers")
@json_option
def solvers_command(as_json):
    """List every installed solver: its package, idea, paper and options with their defaults."""
    described = describe_solvers()
    if as_json:
        emit_json(described)
        return
    out = stdout_console()
    for row in described:
        if "error" in row:
            out.print(f"[bold red]{row['name']}[/] ({row['package']}): {row['error']}")
            continue
        out.print(f"[bold]{row['name']}[/] ({row['package']}): {row['description']}")
        if row["paper"]:
            out.print(f"  paper: {row['paper']}")
        if row["defaults"]:
            out.print("  defaults: " + ", ".join(f"{k}={v}" for k, v in row["defaults"].items()))
        table = Table(show_header=True, box=None, padding=(0, 2))
        for column in ("option", "type", "default", "flag", "what"):
            table.add_column(column)
        for spec in row["options"]:
            kind = "|".join(spec["choices"]) if spec["choices"] else spec["type"]
            table.add_row(spec["name"], kind, "auto" if spec["default"] is None else str(spec["default"]),
                          spec["flag"] or "", escape(spec["help"]))
        if row["options"]:
            out.print(table)
        out.print()


#: What ``compare`` writes into --out (see ``reporting.write_compare_files``).
COMPARE_FILES = ("compare.json", "compare.csv", "compare.md", "curves.png")


def scores_with_progress(run_dirs, omniglot, eval_tasks, device="cpu") -> list:
    with LazyProgress("score on the fixed test tasks") as progress:
        return score_runs(run_dirs, omniglot, eval_tasks, device, progress)


@cli.command()
@click.option("--solvers", default="transfer,fomaml,maml", show_default=True,
              help="Comma-separated solvers to train with the same seed, data and budget.")
@click.option("--runs", "run_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A finished run folder to include instead of training (repeatable).")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for compare.json/.csv/.md, curves.png and the trained runs.")
@click.option("--force", is_flag=True, help="Allow replacing an earlier comparison in --out.")
@threads_option
@json_option
def compare(solvers, run_dirs, out_dir, force, as_json, data_root, download, **training):
    """Train solvers on the same budget (or load --runs) and score them on the same test tasks.

    Prints one table (with each solver's paired difference to the best) and writes
    compare.json, compare.csv, compare.md and curves.png to --out.
    """
    names = [name.strip() for name in solvers.split(",") if name.strip()] if not run_dirs else []
    for name in names:
        if name not in SOLVERS:
            raise click.BadParameter(f"unknown solver {name!r}; use some of {', '.join(SOLVERS)}",
                                     param_hint="--solvers")
    if (out_dir / "compare.json").is_file() and not force:
        raise click.UsageError(f"--out {out_dir} already holds a comparison; choose another folder or add --force")
    for run_dir in run_dirs:  # an output that is an input is refused even with --force
        check_not_an_input(out_dir, "--out", {"--runs": run_dir})
    check_output_folder(out_dir, force, "--out", COMPARE_FILES)
    eval_tasks = training.get("eval_tasks")
    configs = configs_from_options(names, training)
    for config in configs:
        check_out_dir(out_dir / config.solver, force)
    for run_dir in run_dirs:  # what the table and curves.png read from each run, before any task is scored
        load_checkpoint(run_dir / "checkpoint.pt")
        curves(run_dir)
        read_result(run_dir)
    omniglot = open_omniglot(data_root, download)
    trained = []
    for config in configs:
        run_dir = out_dir / config.solver
        with progress_bar() as progress:
            task = progress.add_task(f"meta-train {config.solver}", total=config.iterations)
            train_isolated(config, data_root, run_dir, lambda done: progress.update(task, completed=done))
        trained.append(run_dir)
    all_runs = trained + list(run_dirs)
    if not all_runs:
        raise click.UsageError("nothing to compare: give --solvers or --runs")
    scored = scores_with_progress(all_runs, omniglot, eval_tasks)
    rows = compare_rows(scored)
    reference = scored[0].config
    title = (f"{reference.ways}-way {reference.shots}-shot, {reference.split} split, "
             f"{rows[0]['test_tasks']} fixed test tasks")
    files = write_compare_files(out_dir, rows, title, run_curves(scored))
    if as_json:
        emit_json({"title": title, "rows": rows})
        return
    stdout_console().print(compare_table(rows, title))
    stdout_console().print("wrote " + ", ".join(str(f) for f in files))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--eval-tasks", type=click.IntRange(1, MAX_EVALUATION_TASKS), default=None,
              help="Fixed test tasks (tasks benchmark). [default: the run's]")
@click.option("--ways", type=click.IntRange(min=2), default=None,
              help="Classes per test task (tasks benchmark); another way than the run's only for solvers that "
                   "allow it (protonet, transfer classes). [default: the run's]")
@click.option("--shots", type=click.IntRange(min=1), default=None,
              help="Support images per class (tasks benchmark). [default: the run's]")
@click.option("--benchmark", type=click.Choice(BENCHMARKS), default="tasks", show_default=True,
              help="tasks: the fixed test tasks; lake20: Lake's 20-way one-shot runs (all_runs.zip).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@data_root_option
@threads_option
@json_option
def evaluate(run_dir, eval_tasks, ways, shots, benchmark, device, data_root, as_json):
    """Re-score a saved run on the fixed test tasks, or on Lake's 20-way runs."""
    check_evaluate_options(benchmark, eval_tasks, shots, ways)  # before the data and the model are loaded
    omniglot = open_omniglot(data_root)
    with LazyProgress(f"evaluate ({benchmark})") as progress:
        report = evaluate_run(run_dir, omniglot, benchmark, eval_tasks, shots, device, progress=progress, ways=ways)
    if as_json:
        emit_json(report)
        return
    if benchmark == "lake20":
        table = Table(title=f"Lake's 20-way one-shot runs: {report['label']} ({run_dir})")
        table.add_column("run")
        table.add_column("error", justify="right")
        for name, error in report["per_run_error"].items():
            table.add_row(name, f"{error:.1%}")
        table.add_row("[bold]overall", f"[bold]{report['error']:.1%} ± {report['error_ci95']:.1%}[/] "
                                        f"({report['interval']})")
        table.add_row("human (Lake et al. 2015)", f"{HUMAN_LAKE20_ERROR:.1%}")
        stdout_console().print(table)
        return
    stdout_console().print(f"{report['label']} on {report['test_tasks']} fixed {report['ways']}-way "
                           f"{report['shots']}-shot test tasks: [bold]{report['test_accuracy']:.4f} ± "
                           f"{report['test_ci95']:.4f}[/bold] (95% CI)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("test_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The submission CSV to write.")
@click.option("--answers", type=click.Path(path_type=Path), default=None,
              help="An id,class CSV of the right answers; prints the accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Not needed for runs of this version (the checkpoint names the characters the model trained on, "
                   "for the leak warning); for an older run, the Omniglot folder its split is rebuilt from. "
                   "Default: $OMNIMETA_DATA, else ~/.cache/omnimeta/omniglot.")
@threads_option
@json_option
def predict(run_dir, test_dir, output, answers, force, device, data_root, as_json):
    """Turn an HW15 Omniglot-test folder into a submission CSV (id,class); needs only the run and the folder."""
    check_predict_paths(run_dir, test_dir, output, answers, force)  # before the data and the model are loaded
    # The checkpoint names the characters its model trained on: the data is read only for a run older than that.
    report = predict_folder(run_dir, test_dir, output, answers, device, force=force, data_root=data_root)
    if report.get("leak_warning"):
        click.echo(f"Warning: {report['leak_warning']}", err=True)
    if as_json:
        emit_json(report)
        return
    accuracy = report["accuracy"]
    stdout_console().print(f"wrote {report['rows']} rows to {output}"
                           + (f"; accuracy against {answers}: [bold]{accuracy:.4f}" if accuracy is not None else ""))


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="omnimeta")


__all__ = ["cli", "main"]
