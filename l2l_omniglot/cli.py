"""The ``omnimeta`` command line: thin click commands over the library.

Every command parses, calls one library function and prints. A problem the
user can fix (:class:`~l2l_omniglot.errors.OmnimetaError`, or a click usage
error) is printed as one line, ``Error: ...``, with exit status 2 and no
traceback.

Solvers and benchmarks are plugins, imported when a command needs them: the
solvers' own flags join ``run`` and ``compare`` when those are parsed or asked
for ``--help`` (:class:`SolverFlagsCommand`), and a ``--solver`` or
``--benchmark`` choice lists the installed names without importing them
(:class:`PluginChoice`). ``omnimeta --help`` and ``omnimeta data info`` import
no solver and no benchmark.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from l2l_omniglot.benchmarks import BENCHMARKS, describe_benchmarks
from l2l_omniglot.cli_options import (PluginChoice, SolverFlagsCommand, data_root_option, json_option, open_omniglot,
                                      precision_option, run_options, threads_option)
from l2l_omniglot.cli_studies import reproduce_command, tune_command
from l2l_omniglot.compare import compare_solvers
from l2l_omniglot.config import DEVICES, MAX_EVALUATION_TASKS
from l2l_omniglot.console import (OneLineErrors, ProgressBars, emit_json, options_table, progress_bars, result_table,
                                  show_plugins, stdout_console)
from l2l_omniglot.data.splits import SPLITS, make_split
from l2l_omniglot.distributed import BACKENDS, DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, choose_backend, launched_as_rank
from l2l_omniglot.launch import RunRequest, run_training
from l2l_omniglot.process import freeze_imports
from l2l_omniglot.reporting import compare_table
from l2l_omniglot.run_folder import RunFolderLock, check_out_dir
from l2l_omniglot.run_state import load_saved_state
from l2l_omniglot.scoring import evaluate_run, predict_folder, show_report
from l2l_omniglot.solvers import SOLVERS, describe_solvers
from l2l_omniglot.solvers.flags import configs_from_options, given_options, parse_option_values
from l2l_omniglot.tune_report import load_params


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omnimeta")
def cli():
    """omnimeta: few-shot classification on Omniglot with learn2learn.

    Meta-train few-shot solvers (built-in or plugins: `omnimeta solvers`), score
    them on fixed test tasks and compare them side by side.
    """


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


def default_out_dir(solver: str) -> Path:
    return Path("runs") / f"{solver}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@cli.command(cls=SolverFlagsCommand)
@click.option("--solver", type=PluginChoice(SOLVERS), default="fomaml", show_default=True,
              help="Which solver to meta-train (`omnimeta solvers` lists them with their options).")
@run_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder. [default: runs/<solver>-<date>-<time>]")
@click.option("--force", is_flag=True, help="Allow writing into a folder that already holds a run (replacing it).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Save the resumable state (state.pt) every N iterations.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder from its saved state, with its own config and data.")
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="Take the settings from a study's best.json (`omnimeta tune`); options given here win.")
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
def run(solver, out_dir, force, checkpoint_every, resume_dir, params_file, nproc, max_restarts, backend, dist_timeout, as_json,
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
        given = given_options(training) + (["--out"] if out_dir is not None else []) + \
            (["--params"] if params_file is not None else [])
        if given:
            raise click.UsageError(f"--resume continues with the run's own config; drop {', '.join(given)}")
        config, _ = load_saved_state(resume_dir)
        RunFolderLock.check(resume_dir)  # another process working there is refused now, not after loading data
        request = RunRequest(resume_dir, resume=True, checkpoint_every=checkpoint_every,
                             data_root=str(data_root) if data_root else None)
    else:
        params = load_params(params_file, solver) if params_file is not None else ({}, {})
        (config,) = configs_from_options([solver], training, params)
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
    """List every installed solver: its package, idea, paper, options with their defaults, and search space."""
    def details(row: dict) -> list:
        lines = [f"  paper: {escape(row['paper'])}"] if row["paper"] else []
        if row["defaults"]:
            lines.append("  defaults: " + ", ".join(f"{k}={v}" for k, v in row["defaults"].items()))
        space = {dimension["name"]: dimension["text"] for dimension in row.get("space", [])}
        lines += [options_table(row["options"], space)] if row["options"] else []
        shared = [f"{d['name']} {d['text']}" for d in row.get("space", []) if d["shared"]]
        if shared or "space_error" in row:
            lines.append("  tuned shared settings: " + escape(row.get("space_error") or "; ".join(shared)))
        return lines

    show_plugins(describe_solvers(), details, as_json)


@cli.command("benchmarks")
@json_option
def benchmarks_command(as_json):
    """List every installed benchmark: its package, what it scores, its leak guard and options."""
    def details(row: dict) -> list:
        lines = [f"  items: {escape(row['about'])}; leak guard: {row['leak_guard']}"]
        return lines + ([options_table(row["options"])] if row["options"] else [])

    show_plugins(describe_benchmarks(), details, as_json)


@cli.command(cls=SolverFlagsCommand)
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
    comparison = compare_solvers(configs_from_options(names, training), out_dir, run_dirs,
                                 omniglot=lambda: open_omniglot(data_root, download), data_root=data_root,
                                 eval_tasks=training.get("eval_tasks"), force=force, progress=progress_bars)
    if as_json:
        emit_json({"title": comparison["title"], "rows": comparison["rows"]})
        return
    stdout_console().print(compare_table(comparison["rows"], comparison["title"]))
    stdout_console().print("wrote " + ", ".join(comparison["files"]))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--benchmark", type=PluginChoice(BENCHMARKS), default="tasks", show_default=True,
              help="What to score on (`omnimeta benchmarks` lists them): tasks, the run's fixed test tasks; lake20, "
                   "Lake's 20-way one-shot runs (all_runs.zip); hw15, an HW15 folder with its answers "
                   "(--option folder=DIR --option answers=CSV); or an installed plugin's.")
@click.option("--eval-tasks", type=click.IntRange(1, MAX_EVALUATION_TASKS), default=None,
              help="Fixed test tasks (tasks benchmark). [default: the run's]")
@click.option("--ways", type=click.IntRange(min=2), default=None,
              help="Classes per test task (tasks benchmark, and any that takes ways); another way than the run's "
                   "only for solvers that allow it (protonet, transfer classes). [default: the run's]")
@click.option("--shots", type=click.IntRange(min=1), default=None,
              help="Support images per class (tasks benchmark, and any that takes shots). [default: the run's]")
@click.option("--option", "option_values", multiple=True, metavar="NAME=VALUE",
              help="A benchmark's own option (repeatable); `omnimeta benchmarks` lists them.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@precision_option
@data_root_option
@threads_option
@json_option
def evaluate(run_dir, benchmark, eval_tasks, ways, shots, option_values, device, precision, data_root, as_json):
    """Re-score a saved run on a benchmark: its fixed test tasks, Lake's 20-way runs, or any installed one."""
    parsed = parse_option_values(option_values, "omnimeta benchmarks")
    options = {(f"{target}.{name}" if target else name): value for (target, name), value in parsed.items()}
    report = evaluate_run(run_dir, lambda: open_omniglot(data_root), benchmark, eval_tasks, shots, device,
                          progress=progress_bars, ways=ways, options=options, precision=precision)
    if report.get("leak_warning"):
        click.echo(f"Warning: {report['leak_warning']}", err=True)
    if as_json:
        emit_json(report)
        return
    for shown in show_report(report, run_dir):
        stdout_console().print(shown)


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
@precision_option
@threads_option
@json_option
def predict(run_dir, test_dir, output, answers, force, device, data_root, precision, as_json):
    """Turn an HW15 Omniglot-test folder into a submission CSV (id,class): the hw15 benchmark's answers.

    Needs only the run and the folder: the checkpoint names the characters its model trained on (for the
    leak warning); the data is read only for a run older than that record.
    """
    report = predict_folder(run_dir, test_dir, output, answers, device, omniglot=lambda: open_omniglot(data_root),
                            force=force, precision=precision)
    if report.get("leak_warning"):
        click.echo(f"Warning: {report['leak_warning']}", err=True)
    if as_json:
        emit_json(report)
        return
    accuracy = report["accuracy"]
    stdout_console().print(f"wrote {report['rows']} rows to {output}"
                           + (f"; accuracy against {answers}: [bold]{accuracy:.4f}" if accuracy is not None else ""))


cli.add_command(tune_command)
cli.add_command(reproduce_command)


def main(argv=None):
    """Console-script entry point."""
    freeze_imports()
    cli.main(args=argv, prog_name="omnimeta")


__all__ = ["cli", "main"]
