"""Tuning a solver on validation tasks: an Optuna study whose trials are ordinary runs (``omnimeta tune``).

The idea: a fair comparison gives every solver the same tuning budget. A
study draws settings from the solver's own search space
(:mod:`l2l_omniglot.solvers.space`) with Optuna's seeded TPE sampler; each
trial trains them with the same loop as ``omnimeta run``, in its own run
folder ``DIR/trial-NNNN``, but without a test phase (``Trainer(test=False)``:
the test tasks are never built). The objective is the best accuracy on the
run's fixed validation tasks; the running best after every ``--val-every``
iterations is reported to Optuna, whose pruner (median by default, or
successive halving) stops a poor trial after that iteration, its state saved.

Storage is Optuna's: by default a SQLite file ``DIR/study.db``, so running
the same command again continues the study (trial numbers go on; ``--trials
N`` is the number of finished trials the study should hold in all), or any
RDB URL (``--storage postgresql://...``) shared by several machines.
``workers`` processes of this machine share one study: each claims a trial
under a file lock in DIR (so N trials are run in all, none twice) and uses
its share of the cores (the thread policy of :mod:`l2l_omniglot.threads`).

Faults: a worker killed in the middle of a trial leaves it RUNNING; it is
marked FAIL as soon as another worker on this machine sees that its process
is gone, or by Optuna's heartbeat (``fail_stale_trials``) from any machine,
and the study goes on. Ctrl-C stops after the current iteration and says how
to continue. A space that keeps drawing settings that cannot run (as many such
trials as ``--trials``) stops the study with one line. One trial, and how
workers claim trials, is :mod:`l2l_omniglot.tune_trials`; what a study leaves is
written by :mod:`l2l_omniglot.tune_report`.
"""
from __future__ import annotations

import multiprocessing
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.data.omniglot import load_omniglot
from l2l_omniglot.errors import ConfigError, OmnimetaError, as_json_value, describe_differences, first_line
from l2l_omniglot.solvers import SOLVERS, resolve_config, solver_space
from l2l_omniglot.solvers.registry import IN_PROCESS
from l2l_omniglot.threads import THREADS_ENV, configure_threads, rank_environment, task_threads
from l2l_omniglot.process import freeze_imports
from l2l_omniglot.run_folder import RUN_FILES, Interrupted
from l2l_omniglot.tune_report import REPORT_FILES, count_finished, masked_url, write_report
from l2l_omniglot.tune_trials import (Objective, TrialFailed, claim_lock, claim_trial, fail_lost_trials,
                                      quiet_optuna, refuse_impossible_space)

STUDY_FILE = "study.db"
PRUNERS = ("median", "halving", "none")
#: Optuna's heartbeat: a RUNNING trial whose worker was silent this long (on any machine) is marked FAIL.
HEARTBEAT_S = 30
GRACE_S = 120


class TuneInterrupted(Interrupted):
    """Ctrl-C (or SIGTERM) stopped the study; what it holds is kept and the same command continues it."""


@dataclass
class TuneRequest:
    """One ``omnimeta tune`` in plain data (so workers in other processes get it whole)."""

    solver: str
    trials: int
    out_dir: Path
    #: Shared settings the user fixed for every trial (``iterations=20``) and the solver options fixed likewise.
    settings: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    #: ``--space`` overrides: name -> ``"LOW:HIGH"`` or ``"a,b,c"``.
    space: dict = field(default_factory=dict)
    storage: Optional[str] = None
    study: Optional[str] = None
    workers: int = 1
    pruner: str = "median"
    data_root: Optional[str] = None

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1 (got {self.trials})")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {self.workers})")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}")

    def continue_hint(self) -> str:
        storage = f" --storage {masked_url(self.storage)}" if self.storage else ""
        return (f"continue with the same command (omnimeta tune --solver {self.solver} --trials {self.trials} "
                f"--out {self.out_dir}{storage} and the same settings)")

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / STUDY_FILE).resolve()}"

    @property
    def study_name(self) -> str:
        return self.study or self.out_dir.resolve().name

    def search_space(self):
        """The solver's space with the ``--space`` overrides, less the settings the user fixed (given, not searched)."""
        space = solver_space(SOLVERS[self.solver], self.space)
        fixed = (set(self.settings) | set(self.options)) - set(self.space)
        return replace(space, dimensions=tuple(d for d in space.dimensions if d.name not in fixed))

    def base_config(self) -> RunConfig:
        """The settings every trial shares, checked now (the device too), so that what the user set fails before
        the study starts and never counts as a trial's impossible settings."""
        config = resolve_config(self.solver, options=dict(self.options), **self.settings)
        resolve_device(config.device)
        return config


class TuneCallbacks:
    """What a study reports while it works (the command line draws a bar over trials)."""

    def on_start(self, total: int, finished: int) -> None:
        """The study holds ``finished`` of its ``total`` trials and is about to run the rest."""

    def on_progress(self, finished: int, best: Optional[float]) -> None:
        """``finished`` trials are done; ``best`` is the best validation accuracy so far (None before one)."""

    def on_warning(self, message: str) -> None:
        warnings.warn(message, stacklevel=2)


def open_storage(url: str):
    """Optuna's RDB storage at ``url`` with a heartbeat, or a one-line ConfigError saying why it cannot be opened."""
    optuna = quiet_optuna()
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None  # workers wait for the lock
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=GRACE_S)
    except Exception as error:  # SQLAlchemy and drivers raise many kinds; none of them is a bug of ours
        raise ConfigError(f"--storage {masked_url(url)} cannot be opened ({type(error).__name__}: "
                          f"{first_line(error, 160)}); give a URL Optuna accepts (sqlite:///PATH, "
                          f"postgresql://..., mysql://...) whose server and driver are there") from None


def _sampler(request: TuneRequest, config: RunConfig, worker: int):
    # Each worker its own seed: workers with one seed would propose the same settings at the same time.
    return quiet_optuna().samplers.TPESampler(seed=config.seed + worker)


def _pruner(request: TuneRequest, config: RunConfig):
    pruners = quiet_optuna().pruners
    if request.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if request.pruner == "halving":
        return pruners.SuccessiveHalvingPruner(min_resource=config.val_every, reduction_factor=3)
    return pruners.NopPruner()


def study_identity(request: TuneRequest, config: RunConfig, space) -> dict:
    """What makes two studies comparable: the solver, every fixed setting and the space (kept in the study)."""
    return {"solver": request.solver, "config": config.to_dict(), "space": space.describe()}


def open_study(request: TuneRequest, config: RunConfig, space, storage, worker: int = 0):
    """Create the study, or load it and refuse one of another solver, other settings or another space."""
    optuna = quiet_optuna()
    study = optuna.create_study(storage=storage, study_name=request.study_name, direction="maximize",
                                sampler=_sampler(request, config, worker), pruner=_pruner(request, config),
                                load_if_exists=True)
    identity = study_identity(request, config, space)
    saved = study.user_attrs.get("omnimeta")
    if saved is None:
        study.set_user_attr("omnimeta", identity)
        return study
    if saved.get("solver") != request.solver:
        raise ConfigError(f"study {request.study_name!r} in {masked_url(request.storage_url)} tunes "
                          f"{saved.get('solver')}, not {request.solver}; use another --out (or --study), or "
                          f"--solver {saved.get('solver')}")
    for key in ("config", "space"):
        if saved.get(key) != as_json_value(identity[key]):
            differs = describe_differences(_by_name(saved.get(key)), _by_name(identity[key]), "there", "now")
            raise ConfigError(f"study {request.study_name!r} was made with another {key} ({differs}); rerun it "
                              f"with the same settings, or start a new study with another --out (or --study)")
    return study


def _by_name(record):
    """A space (a list of dimensions, each with its ``name`` and ``text``) as ``{name: text}``, so that a message
    names what differs ("train_ways: "linear 5..10" there, "linear 5..60" now"); a config (a dict) as it is."""
    if isinstance(record, list) and all(isinstance(item, dict) and "name" in item for item in record):
        return {item["name"]: item.get("text", item) for item in record}
    return record


def check_tune_dir(out_dir: Path, new_study: bool) -> None:
    """Refuse a DIR that holds a run or other files, or trial folders that a new study would mix with its own."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder path")
    if not out_dir.is_dir():
        return
    if any((out_dir / name).exists() for name in RUN_FILES):
        raise ConfigError(f"--out {out_dir} holds a run, not a study; choose another folder")
    if new_study and (any(out_dir.glob("trial-*")) or any((out_dir / name).exists() for name in REPORT_FILES)):
        raise ConfigError(f"--out {out_dir} holds trial folders or reports of another study; choose another folder")


def run_trials(request: TuneRequest, omniglot, worker: int = 0, on_trial=lambda study: None) -> None:
    """One worker: claim trials and run them until the study holds ``request.trials`` finished ones."""
    config = request.base_config()
    space = request.search_space()
    study = open_study(request, config, space, open_storage(request.storage_url), worker)
    objective = Objective(request, space, omniglot)
    refuse_impossible_space(study, request.trials)  # a study stopped for it says so again, running nothing
    while claim_trial(study, request.out_dir, request.trials):
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
        on_trial(study)
        refuse_impossible_space(study, request.trials)


def _worker_process(request: TuneRequest, worker: int, threads: int) -> None:
    """A worker of ``--workers`` in its own process: its share of the cores, the data, then trials."""
    freeze_imports()
    try:
        configure_threads(threads)
        run_trials(request, load_omniglot(request.data_root), worker)
    except (Interrupted, KeyboardInterrupt):
        sys.exit(130)
    except OmnimetaError as error:
        print(f"Error: worker {worker}: {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code)


def tune(request: TuneRequest, callbacks: Optional[TuneCallbacks] = None) -> dict:
    """Run (or continue) the study ``request`` asks for and write its report; returns ``tune.json``'s dict.

    Raises :class:`TuneInterrupted` (after writing the report) when Ctrl-C or SIGTERM stopped it.
    """
    callbacks = callbacks or TuneCallbacks()
    space = request.search_space()  # bad --space names fail first
    config = request.base_config()
    if request.workers > 1 and SOLVERS.entry(request.solver).package == IN_PROCESS:
        raise ConfigError(f"solver {request.solver} is registered in this process only, so --workers processes "
                          f"cannot load it; install its package (an entry point) or use --workers 1")
    out_dir = request.out_dir
    check_tune_dir(out_dir, new_study=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(request.storage_url)
    check_tune_dir(out_dir, new_study=request.study_name not in quiet_optuna().get_all_study_names(storage))
    study = open_study(request, config, space, storage)
    callbacks.on_start(request.trials, count_finished(study))
    interrupted = impossible = None
    try:
        if request.workers == 1:
            task_threads()
            run_trials(request, load_omniglot(request.data_root),
                       on_trial=lambda s: callbacks.on_progress(*_progress(s)))
        else:
            _run_workers(request, study, callbacks)
            refuse_impossible_space(study, request.trials)  # what stopped the workers, if that did
    except (Interrupted, KeyboardInterrupt) as error:
        interrupted = error
    except ConfigError as error:  # the space draws settings that cannot run: report what ran, then say so
        impossible = error
    with claim_lock(out_dir):
        lost = fail_lost_trials(study)
    if lost:
        callbacks.on_warning(f"trial(s) {', '.join(map(str, lost))} failed: their worker ended mid-trial")
    report = write_report(study, request, config, space)
    callbacks.on_progress(*_progress(study))
    if impossible is not None:
        raise impossible
    if interrupted is not None:
        raise TuneInterrupted(f"stopped: the study holds {report['finished']} of {request.trials} finished trials "
                              f"(the interrupted trial is marked failed); {request.continue_hint()}",
                              getattr(interrupted, "exit_code", 130) - 128) from None
    if report["finished"] < request.trials:
        raise OmnimetaError(f"the study holds {report['finished']} of {request.trials} finished trials (workers "
                            f"failed, see above); {request.continue_hint()}")
    return report


def _progress(study) -> tuple:
    optuna = quiet_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return count_finished(study), max((t.value for t in complete), default=None)


def _run_workers(request: TuneRequest, study, callbacks: TuneCallbacks) -> None:
    """Start ``request.workers`` processes that share the study; follow it until they end."""
    threads = int(rank_environment(request.workers)[THREADS_ENV])
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_process, args=(request, index, threads), daemon=False)
               for index in range(request.workers)]
    for process in workers:
        process.start()
    try:
        while any(process.is_alive() for process in workers):
            for process in workers:
                process.join(1.0 / len(workers))
            callbacks.on_progress(*_progress(study))
    except KeyboardInterrupt:
        for process in workers:  # they got the same Ctrl-C and stop after their iteration
            process.join(60)
            if process.is_alive():
                process.terminate()
        raise
    failed = [f"worker {index} (exit status {process.exitcode})" for index, process in enumerate(workers)
              if process.exitcode not in (0, 130)]
    if failed and len(failed) < len(workers):  # when all ended early, the caller says why (or that they did)
        callbacks.on_warning(f"{', '.join(failed)} ended early; the others went on")


__all__ = ["PRUNERS", "TrialFailed", "TuneCallbacks", "TuneInterrupted", "TuneRequest", "open_storage", "run_trials",
           "tune"]
