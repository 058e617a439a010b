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

from l2l_omniglot.checkpoint import load_checkpoint
from l2l_omniglot.config import DEVICES, LR_SCHEDULES, RunConfig, resolve_config
from l2l_omniglot.data.omniglot import download_omniglot, load_omniglot, resolve_root
from l2l_omniglot.data.splits import SPLITS, make_split
from l2l_omniglot.data.tasks import AUGMENTS
from l2l_omniglot.engines import ENGINES
from l2l_omniglot.distributed import (BACKENDS, DEFAULT_TIMEOUT_S, Ranks, check_splittable, choose_backend,
                                      launch_local_ranks, launched_as_rank, reports_error)
from l2l_omniglot.errors import OmnimetaError
from l2l_omniglot.solvers import SOLVERS
from l2l_omniglot.solvers.transfer import TRANSFER_MODES
from l2l_omniglot.training import Interrupted, Trainer, check_out_dir, load_saved_state

console = Console(stderr=True)


def stdout_console() -> Console:
    """Tables go to stdout; when that is a file or a pipe, don't squeeze them into 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


class OneLineErrors(click.Group):
    """A group whose errors are one line on stderr, exit status 2, never a traceback.

    In a distributed run every rank fails alike on bad input, so only rank 0
    prints it; a failure of a rank's own (see ``distributed.RankError``) is
    printed by that rank.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        def fail(message: str, error: BaseException, status: int):
            if reports_error(error):
                click.echo(message, err=True)
            sys.exit(status)

        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            fail(f"Error: {error.format_message()}", error, error.exit_code)
        except Interrupted as error:
            fail(str(error), error, 130)
        except OmnimetaError as error:
            fail(f"Error: {error}", error, error.exit_code)
        except (click.Abort, KeyboardInterrupt) as error:
            fail("Aborted.", error, 130)
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
    out = stdout_console()
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


def default_help(key: str) -> str:
    """`` [default: V; solver W ...]`` from RunConfig and the solvers' own defaults, so help cannot drift."""
    def shown(value):
        return ("zero" if value else "learned") if key == "zero_head" else value

    own = [f"{name} {shown(cls.defaults[key])}" for name, cls in SOLVERS.items() if key in cls.defaults]
    own += [f"{name} {mode} mode {shown(values[key])}" for name, cls in SOLVERS.items()
            for mode, values in getattr(cls, "mode_defaults", {}).items() if key in values]
    return f" [default: {shown(getattr(RunConfig(), key))}" + ("; " + ", ".join(own) if own else "") + "]"


def run_options(function):
    """The training options shared by ``run`` and ``compare`` (their names are a contract)."""
    options = [
        click.option("--ways", type=int, default=None, help="Classes per task." + default_help("ways")),
        click.option("--shots", type=int, default=None, help="Support images per class." + default_help("shots")),
        click.option("--queries", type=int, default=None, help="Query images per class." + default_help("queries")),
        click.option("--meta-batch", type=int, default=None, help="Tasks per meta-iteration." + default_help("meta_batch")),
        click.option("--iterations", type=int, default=None,
                     help="Meta-iterations." + default_help("iterations")),
        click.option("--inner-lr", type=float, default=None,
                     help="Inner-loop (adaptation / fine-tuning) learning rate." + default_help("inner_lr")),
        click.option("--meta-lr", type=float, default=None, help="Adam learning rate of the outer loop." + default_help("meta_lr")),
        click.option("--train-inner-steps", type=int, default=None, help="Adaptation steps while meta-training." + default_help("train_inner_steps")),
        click.option("--test-inner-steps", type=int, default=None,
                     help="Adaptation steps at validation and test." + default_help("test_inner_steps")),
        click.option("--split", type=click.Choice(SPLITS), default=None, help="Character split." + default_help("split")),
        click.option("--augment", type=click.Choice(AUGMENTS), default=None,
                     help="Meta-train augmentation; rotate adds 90/180/270-degree classes." + default_help("augment")),
        click.option("--eval-tasks", type=int, default=None, help="Fixed test tasks." + default_help("eval_tasks")),
        click.option("--val-tasks", type=int, default=None, help="Fixed validation tasks." + default_help("val_tasks")),
        click.option("--val-every", type=int, default=None, help="Validate every N iterations." + default_help("val_every")),
        click.option("--seed", type=int, default=None, help="Seed of the training task stream and weights." + default_help("seed")),
        click.option("--device", type=click.Choice(DEVICES), default=None, help="Where to train." + default_help("device")),
        click.option("--transfer-mode", type=click.Choice(TRANSFER_MODES), default=None,
                     help="transfer only: pre-train on all classes, or on task-local labels (HW15)." + default_help("transfer_mode")),
        click.option("--zero-head/--learned-head", default=None,
                     help="fomaml/maml: start every task from a zero head instead of a meta-learned one."
                          + default_help("zero_head")),
        click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                     help="fomaml/maml: adapt tasks one at a time with learn2learn (l2l), or all at once with "
                          "torch.func (batched)." + default_help("engine")),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
                     help="Meta learning rate: cosine-annealed to zero over the run, or constant."
                          + default_help("lr_schedule")),
        data_root_option,
        click.option("--download", is_flag=True, help="Fetch the canonical Omniglot archives first if missing."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


TRAINING_KEYS = ("ways", "shots", "queries", "meta_batch", "iterations", "inner_lr", "meta_lr", "train_inner_steps",
                 "test_inner_steps", "split", "augment", "eval_tasks", "val_tasks", "val_every", "seed", "device",
                 "transfer_mode", "zero_head", "lr_schedule", "engine")


def default_out_dir(solver: str) -> Path:
    return Path("runs") / f"{solver}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def train_with_progress(trainer) -> dict:
    """Run a :class:`~l2l_omniglot.training.Trainer` under rich progress bars (loss, accuracy, it/s)."""
    config = trainer.config
    with progress_bar(TextColumn("{task.fields[status]}")) as progress:
        train = progress.add_task(f"meta-train {config.solver}", total=config.iterations,
                                  completed=trainer.iteration, status="")
        shown = {"val": "-"}
        first_iteration, start = trainer.iteration, time.perf_counter()

        def on_step(iteration, stats, seconds):
            speed = (iteration - first_iteration) / max(time.perf_counter() - start, 1e-9)
            progress.update(train, completed=iteration, status=f"loss {stats.loss:.3f}  acc {stats.accuracy:.3f}  "
                                                               f"val {shown['val']}  {speed:.2f} it/s")

        def on_validation(iteration, score):
            shown["val"] = f"{score.accuracy:.3f}"

        def on_eval_start(tasks):
            shown["eval"] = progress.add_task("meta-test", total=tasks, status="")

        def on_eval_progress(done):
            progress.advance(shown["eval"], done)

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
@click.option("--force", is_flag=True, help="Allow writing into a folder that already holds a run (replacing it).")
@click.option("--checkpoint-every", type=int, default=100, show_default=True,
              help="Save the resumable state (state.pt) every N iterations.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder from its saved state, with its own config.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Train data-parallel on N processes of this machine (torch.distributed); the result equals "
                   "one process's. Under torchrun leave it out. See docs/distributed.md. [default: 1]")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="torch.distributed backend for several ranks: auto is nccl on GPUs (one per rank), gloo on the CPU.")
@click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_S,
              show_default=True,
              help="Seconds a rank waits for the rendezvous, or for the other ranks, before it stops with an error.")
@json_option
def run(solver, out_dir, force, checkpoint_every, resume_dir, nproc, backend, dist_timeout, as_json, data_root,
        download, **training):
    """Meta-train a solver, keep its best validated state and score it on the fixed test tasks.

    The run folder gets config.json, metrics.jsonl, checkpoint.pt (best validated
    state), state.pt (resumable) and result.json. A run stopped by Ctrl-C or a
    crash continues with --resume RUN_DIR and ends with the same numbers.
    """
    if resume_dir is not None:
        given = [k for k in TRAINING_KEYS if training[k] is not None]
        if given or out_dir is not None:
            options = ", ".join("--" + k.replace("_", "-") for k in given + (["out"] if out_dir else []))
            raise click.UsageError(f"--resume continues with the run's own config; drop {options}")
        config, _ = load_saved_state(resume_dir)
        out_dir = resume_dir
    else:
        config = resolve_config(solver, **{k: training[k] for k in TRAINING_KEYS})
        out_dir = out_dir or default_out_dir(solver)
    if nproc is not None and nproc > 1:
        return launch_ranks(nproc, config, backend, out_dir, force, resume_dir, data_root, download)
    ranks = Ranks.join(config.device, backend, dist_timeout)
    try:
        # Rank 0 loads (or fetches and decodes) the data first, so that the others find it cached.
        omniglot = ranks.agree(lambda: open_omniglot(data_root, download) if ranks.is_main else None)

        def build_trainer():
            data = omniglot if omniglot is not None else load_omniglot(data_root)
            if resume_dir is not None:
                return Trainer.resume(resume_dir, data, checkpoint_every, ranks)
            return Trainer(config, data, out_dir, force, checkpoint_every, ranks)

        trainer = ranks.agree(build_trainer)
        result = train_with_progress(trainer) if ranks.is_main else trainer.run()
    finally:
        ranks.close()
    if not ranks.is_main:
        return
    if as_json:
        emit_json(result)
        return
    stdout_console().print(result_table([result], f"{config.ways}-way {config.shots}-shot, {config.split} split, "
                                           f"meta-test on {result['test_tasks']} fixed tasks"))
    stdout_console().print(f"run saved in {out_dir}")


def rank_command_line(dropped: tuple, **replaced) -> list:
    """This command's parsed options as a command line again, minus ``dropped``, for the ranks to run."""
    context = click.get_current_context()
    arguments = [context.info_name]
    for param in context.command.params:
        if not isinstance(param, click.Option) or param.name in dropped:
            continue
        value = replaced.get(param.name, context.params[param.name])
        if param.is_flag and param.secondary_opts and value is not None:
            arguments.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            arguments += [param.opts[0]] if value else []
        elif value is not None:
            arguments += [param.opts[0], str(value)]
    return arguments


def launch_ranks(nproc, config, backend, out_dir, force, resume_dir, data_root, download) -> int:
    """``run --nproc N``: check what can be checked once, then run N ranks of this same command on this machine."""
    if launched_as_rank():
        raise click.UsageError("--nproc starts its own ranks; under torchrun leave it out")
    check_splittable(config, nproc)
    choose_backend(config.device, backend, local_rank=nproc - 1)
    if resume_dir is None:
        check_out_dir(out_dir, force)
    open_omniglot(data_root, download)  # a missing data set fails here once; a first load decodes it once for all
    arguments = rank_command_line(("nproc", "download"), out_dir=None if resume_dir else out_dir)
    return launch_local_ranks(arguments, nproc, f"The last saved state is in {out_dir}; continue with: "
                                                f"omnimeta run --resume {out_dir} --nproc {nproc}")


def scores_with_progress(run_dirs, omniglot, eval_tasks, device="cpu") -> list:
    from l2l_omniglot.compare import score_runs

    with progress_bar() as progress:
        task = progress.add_task("score on the fixed test tasks", total=None)
        return score_runs(run_dirs, omniglot, eval_tasks, device, lambda done: progress.advance(task, done))


@cli.command()
@click.option("--solvers", default="transfer,fomaml,maml", show_default=True,
              help="Comma-separated solvers to train with the same seed, data and budget.")
@click.option("--runs", "run_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A finished run folder to include instead of training (repeatable).")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for compare.json/.csv/.md, curves.png and the trained runs.")
@click.option("--force", is_flag=True, help="Allow replacing an earlier comparison in --out.")
@json_option
def compare(solvers, run_dirs, out_dir, force, as_json, data_root, download, **training):
    """Train solvers on the same budget (or load --runs) and score them on the same test tasks.

    Prints one table (with each solver's paired difference to the best) and writes
    compare.json, compare.csv, compare.md and curves.png to --out.
    """
    from l2l_omniglot.compare import compare_rows, curves, train_isolated
    from l2l_omniglot.reporting import compare_table, write_compare_files
    from l2l_omniglot.training import check_out_dir

    names = [name.strip() for name in solvers.split(",") if name.strip()] if not run_dirs else []
    for name in names:
        if name not in SOLVERS:
            raise click.BadParameter(f"unknown solver {name!r}; use some of {', '.join(SOLVERS)}",
                                     param_hint="--solvers")
    if (out_dir / "compare.json").exists() and not force:
        raise click.UsageError(f"--out {out_dir} already holds a comparison; choose another folder or add --force")
    configs = [resolve_config(name, **{k: training[k] for k in TRAINING_KEYS}) for name in names]
    for config in configs:
        check_out_dir(out_dir / config.solver, force)
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
    scored = scores_with_progress(all_runs, omniglot, training["eval_tasks"])
    rows = compare_rows(scored)
    reference = scored[0].config
    title = (f"{reference.ways}-way {reference.shots}-shot, {reference.split} split, "
             f"{rows[0]['test_tasks']} fixed test tasks")
    files = write_compare_files(out_dir, rows, title, {run.label: curves(run.run_dir) for run in scored})
    if as_json:
        emit_json({"title": title, "rows": rows})
        return
    stdout_console().print(compare_table(rows, title))
    stdout_console().print("wrote " + ", ".join(str(f) for f in files))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--eval-tasks", type=int, default=None, help="Fixed test tasks. [default: the run's]")
@click.option("--shots", type=int, default=None, help="Support images per class. [default: the run's]")
@click.option("--benchmark", type=click.Choice(["tasks", "lake20"]), default="tasks", show_default=True,
              help="tasks: the fixed test tasks; lake20: Lake's 20-way one-shot runs (all_runs.zip).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@data_root_option
@json_option
def evaluate(run_dir, eval_tasks, shots, benchmark, device, data_root, as_json):
    """Re-score a saved run on the fixed test tasks, or on Lake's 20-way runs."""
    from l2l_omniglot.compare import load_solver
    from l2l_omniglot.data.testsets import read_lake_runs
    from l2l_omniglot.evaluation import HUMAN_LAKE20_ERROR, Score, per_task_accuracy
    from l2l_omniglot.training import Benchmark

    omniglot = open_omniglot(data_root)
    config, solver = load_solver(run_dir, device, omniglot)
    if benchmark == "lake20":
        runs = read_lake_runs(resolve_root(data_root) / "all_runs.zip", config.image_size)
        per_run = per_task_accuracy(solver, runs.tasks)
        errors = {name: 1.0 - float(acc) for name, acc in zip(runs.names, per_run)}
        report = {"benchmark": "lake20", "per_run_error": errors, "error": 1.0 - float(per_run.mean()),
                  "human_error": HUMAN_LAKE20_ERROR, "runs": len(errors)}
        if as_json:
            emit_json(report)
            return
        table = Table(title=f"Lake's 20-way one-shot runs: {config.solver} ({run_dir})")
        table.add_column("run")
        table.add_column("error", justify="right")
        for name, error in errors.items():
            table.add_row(name, f"{error:.1%}")
        table.add_row("[bold]overall", f"[bold]{report['error']:.1%}")
        table.add_row("human (Lake et al. 2015)", f"{HUMAN_LAKE20_ERROR:.1%}")
        stdout_console().print(table)
        return
    shape = RunConfig.from_dict({**config.to_dict(), "shots": shots or config.shots,
                                 "eval_tasks": eval_tasks or config.eval_tasks})
    shape.validate()
    tasks = Benchmark.build(shape, omniglot, phases=("test",)).test_tasks
    with progress_bar() as progress:
        task = progress.add_task("evaluate", total=len(tasks))
        score = Score.of(per_task_accuracy(solver, tasks, progress=lambda done: progress.advance(task, done)))
    report = {"solver": config.solver, "ways": shape.ways, "shots": shape.shots, "split": shape.split,
              "test_accuracy": score.accuracy, "test_ci95": score.ci95, "test_tasks": score.tasks}
    if as_json:
        emit_json(report)
        return
    stdout_console().print(f"{config.solver} on {score.tasks} fixed {shape.ways}-way {shape.shots}-shot test tasks: "
                    f"[bold]{score.accuracy:.4f} ± {score.ci95:.4f}[/bold] (95% CI)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("test_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The submission CSV to write.")
@click.option("--answers", type=click.Path(path_type=Path), default=None,
              help="An id,class CSV of the right answers; prints the accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@data_root_option
@json_option
def predict(run_dir, test_dir, output, answers, force, device, data_root, as_json):
    """Turn an HW15 Omniglot-test folder into a submission CSV (id,class)."""
    from l2l_omniglot.compare import load_solver
    from l2l_omniglot.data.testsets import read_answers, read_hw15_folder, write_submission

    if output.exists() and not force:
        raise click.UsageError(f"{output} exists; choose another -o path or add --force")
    config, _ = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    tasks = read_hw15_folder(test_dir, config.image_size)
    expected = read_answers(answers) if answers else None
    if expected is not None and len(expected) != tasks.query_y.numel():
        raise click.UsageError(f"{answers} has {len(expected)} answers for {tasks.query_y.numel()} queries")
    omniglot = open_omniglot(data_root) if config.solver == "transfer" and config.transfer_mode == "classes" else None
    _, solver = load_solver(run_dir, device, omniglot)
    predictions = solver.predict(tasks)
    rows = write_submission(output, predictions)
    accuracy = None
    if expected is not None:
        accuracy = sum(expected.get(i) == c for i, c in rows) / len(rows)
    if as_json:
        emit_json({"rows": len(rows), "accuracy": accuracy, "output": str(output)})
        return
    stdout_console().print(f"wrote {len(rows)} rows to {output}"
                    + (f"; accuracy against {answers}: [bold]{accuracy:.4f}" if accuracy is not None else ""))


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="omnimeta")


__all__ = ["cli", "main", "resolve_root"]
