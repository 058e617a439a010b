"""One trial of a study, and how workers claim trials (:mod:`l2l_omniglot.tune` runs the study).

A trial draws settings from the solver's space (:func:`suggest`), trains them
as an ordinary run without a test phase (:class:`Objective`), and reports the
running best validation accuracy to Optuna's pruner after each validation
(:class:`PruningReporter`). Workers of one machine claim trials under a file
lock in the study folder (:func:`claim_trial`), so N trials are run in all and
none twice; a trial whose worker process is gone is marked failed
(:func:`fail_lost_trials`), and a space that keeps drawing settings that cannot
run stops the study (:func:`refuse_impossible_space`).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from pathlib import Path

from l2l_omniglot.errors import ConfigError, OmnimetaError
from l2l_omniglot.run_folder import Interrupted
from l2l_omniglot.solvers import resolve_config
from l2l_omniglot.training import NumericalError, RunCallbacks, Trainer
from l2l_omniglot.tune_report import count_finished

CLAIM_LOCK = ".tune.lock"
TRIAL_DIR = "trial-{:04d}"
HOST = socket.gethostname()

#: A trial's user attribute: its drawn settings cannot run at all (a ConfigError), as opposed to a run that failed.
IMPOSSIBLE = "impossible_settings"


class TrialFailed(OmnimetaError):
    """Drawn settings that cannot train (the solver refuses them, the loss diverges): that trial FAILs, no more."""


def quiet_optuna():
    """Optuna, imported when a study needs it, with its per-trial logging and experimental warnings off."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is in tune.json, not a traceback
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@contextlib.contextmanager
def claim_lock(out_dir: Path):
    """One worker of this machine at a time counts the study's trials and claims the next."""
    with open(out_dir / CLAIM_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fail_lost_trials(study) -> list:
    """Mark FAIL the RUNNING trials of this machine whose worker process is gone (killed); their numbers."""
    optuna = quiet_optuna()
    optuna.storages.fail_stale_trials(study)  # those of any machine whose heartbeat stopped
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != HOST or not isinstance(pid, int) or _alive(pid):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "error", f"its worker (process {pid}) ended mid-trial")
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        lost.append(trial.number)
    return lost


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_trial(study, out_dir: Path, trials: int) -> bool:
    """Add one WAITING trial for this worker if the study holds fewer than ``trials`` (finished, running or waiting)."""
    optuna = quiet_optuna()
    with claim_lock(out_dir):
        fail_lost_trials(study)
        taken = count_finished(study) + len(study.get_trials(deepcopy=False, states=(
            optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)))
        if taken >= trials:
            return False
        study.enqueue_trial({})
        return True


class PruningReporter(RunCallbacks):
    """Report the running best validation accuracy to the trial; stop the run after an iteration Optuna prunes."""

    def __init__(self, trial, iterations: int):
        self.trial, self.iterations = trial, iterations
        self.best, self.pruned = -1.0, False

    def on_validation(self, iteration, score) -> None:
        self.best = max(self.best, score.accuracy)
        self.trial.report(self.best, iteration)
        if iteration < self.iterations and self.trial.should_prune():
            self.pruned = True
            raise KeyboardInterrupt  # the Trainer's way to stop after this iteration, its state saved


def suggest(trial, space) -> dict:
    """One value for every dimension of ``space``, drawn by the trial's sampler."""
    values = {}
    for dimension in space.dimensions:
        tune_range = dimension.range
        if tune_range.kind == "choices":
            values[dimension.name] = trial.suggest_categorical(dimension.name, list(tune_range.values))
        elif dimension.type is int:
            values[dimension.name] = trial.suggest_int(dimension.name, int(tune_range.low), int(tune_range.high),
                                                       log=tune_range.kind == "log")
        else:
            values[dimension.name] = trial.suggest_float(dimension.name, float(tune_range.low),
                                                         float(tune_range.high), log=tune_range.kind == "log")
    return values


class Objective:
    """One trial: draw settings, train them as an ordinary run without a test phase, return the best val accuracy.

    ``request`` is the study's :class:`~l2l_omniglot.tune.TuneRequest` (its solver, fixed settings and folder).
    """

    def __init__(self, request, space, omniglot):
        self.request, self.space, self.omniglot = request, space, omniglot

    def __call__(self, trial) -> float:
        optuna = quiet_optuna()
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        shared, own = self.space.split(suggest(trial, self.space))
        request = self.request
        run_dir = request.out_dir / TRIAL_DIR.format(trial.number)
        trial.set_user_attr("run_dir", run_dir.name)
        try:  # a drawn combination can be impossible (ProtoNet's shots + train_queries over 20 drawings)
            config = resolve_config(request.solver, options={**request.options, **own}, **{**request.settings,
                                                                                            **shared})
            trainer = Trainer(config, self.omniglot, run_dir, test=False)
        except ConfigError as error:
            trial.set_user_attr("error", str(error))
            trial.set_user_attr(IMPOSSIBLE, True)
            raise TrialFailed(str(error)) from None
        reporter = PruningReporter(trial, config.iterations)
        try:
            return trainer.run(reporter)["val_accuracy"]
        except Interrupted:
            if reporter.pruned:
                raise optuna.TrialPruned() from None
            trial.set_user_attr("error", "interrupted")
            raise
        except NumericalError as error:
            trial.set_user_attr("error", str(error))
            raise TrialFailed(str(error)) from None
        finally:
            trial.set_user_attr("iterations", trainer.iteration)


def refuse_impossible_space(study, trials: int) -> None:
    """Stop a study whose space keeps drawing settings that cannot run: as many as the trials asked for."""
    impossible = [trial for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get(IMPOSSIBLE)]
    if len(impossible) >= trials:
        raise ConfigError(f"{len(impossible)} trials drew settings that cannot run (last: "
                          f"{impossible[-1].user_attrs['error']}); narrow the search space with --space")
