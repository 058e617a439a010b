"""The options several ``omnimeta`` commands share, and the plugin-aware click types behind them.

Solvers are plugins, imported when a command needs them: their kept flags join a
command of class :class:`SolverFlagsCommand` when it is parsed or shows its
help, and :class:`PluginChoice` lists installed names without importing them.
"""
from __future__ import annotations

from pathlib import Path

import click

from l2l_omniglot.config import DEVICES, LR_SCHEDULES, RunConfig
from l2l_omniglot.console import progress_bar
from l2l_omniglot.data.omniglot import download_omniglot, load_omniglot
from l2l_omniglot.data.splits import SPLITS
from l2l_omniglot.data.tasks import AUGMENTS
from l2l_omniglot.precision import PRECISIONS
from l2l_omniglot.solvers.flags import flag_help, shared_default_help, solver_flags
from l2l_omniglot.threads import use_threads


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



class PluginChoice(click.Choice):
    """A choice among the installed plugins of a registry, read when a value is checked or help is shown.

    Listing names reads the packages' metadata only; no plugin is imported.
    """

    def __init__(self, registry):
        self.registry, self.case_sensitive = registry, True

    @property
    def choices(self) -> tuple:
        return tuple(self.registry)


def solver_flag_option(param: str, entry: dict) -> click.Option:
    """The click option of a flag that solvers keep for their options (``--inner-lr``)."""
    spec = entry["spec"]
    if "/" in spec.flag:
        return click.Option([spec.flag, param], default=None, help=flag_help(entry))
    kind = click.Choice(spec.choices) if spec.choices else {int: int, float: float, str: str}[spec.type]
    return click.Option([spec.flag, param], type=kind, default=None, help=flag_help(entry))


class SolverFlagsCommand(click.Command):
    """A command with the training options: the solvers' kept flags, and their defaults in the shared options'
    help, are added when the command is parsed or shows its help, which loads the solvers then, not at start-up."""

    def get_params(self, ctx):
        if not getattr(self, "_solver_flags_added", False):
            self._solver_flags_added = True
            at = next(i for i, param in enumerate(self.params) if param.name == "option_values")
            self.params[at:at] = [solver_flag_option(param, entry) for param, entry in solver_flags().items()]
            shared = set(RunConfig.shared_names())
            for param in self.params:
                if param.name in shared and getattr(param, "help", None):
                    param.help += shared_default_help(param.name)
        return super().get_params(ctx)


#: evaluate's and predict's --precision: a saved run's tasks adapted and predicted in another arithmetic.
precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default=None,
    help="Adapt and predict in this arithmetic instead of the run's own (float32, or bfloat16 autocast: faster on "
         "CPUs with AVX-512; answers may differ from the run's own precision on near ties). [default: the run's]")


def run_options(function):
    """The training options shared by ``run`` and ``compare`` (their names are a contract)."""
    def shared(name: str, kind, text: str, **extra):  # SolverFlagsCommand adds the defaults to the help
        return click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None, help=text, **extra)

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
        shared("precision", click.Choice(PRECISIONS), "Arithmetic of every step and prediction: float32, or "
                                                      "bfloat16 autocast on float32 weights (faster on CPUs "
                                                      "with AVX-512 BF16; docs/results.md)."),
        click.option("--option", "option_values", multiple=True, metavar="NAME=VALUE",
                     help="A solver's own option (repeatable); `omnimeta solvers` lists them. In compare, "
                          "SOLVER.NAME=VALUE sets it for one solver only."),
        data_root_option,
        click.option("--download", is_flag=True, help="Fetch the canonical Omniglot archives first if missing."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


