"""The meta-training loop: tasks in, a validated solver and a test score out.

:class:`Trainer` is the loop; ``omnimeta run`` builds one in each process
(:func:`l2l_omniglot.launch.run_training`), and an importing user calls
:func:`train_and_evaluate`, which builds one too::

    from l2l_omniglot import load_omniglot, resolve_config, train_and_evaluate
    config = resolve_config("fomaml", iterations=200)
    result = train_and_evaluate(config, load_omniglot("path/to/omniglot"), out_dir="runs/demo")
    print(result["test_accuracy"], result["test_ci95"])

Each iteration draws task batch ``iteration`` of the seed's stream (see
:mod:`l2l_omniglot.data.tasks`) and asks the solver for one step. Every
``val_every`` iterations the solver is scored on the fixed validation tasks,
and the best state so far is kept (and written to ``checkpoint.pt``). At the
end that best state is scored on the fixed test tasks (unless the run was
built with ``test=False``: then no test task is drawn or scored).

Every ``checkpoint_every`` iterations, and on Ctrl-C, the whole loop state
(solver, optimizer, iteration, best state, random generators) goes to
``state.pt``; :meth:`Trainer.resume` continues from it and ends with the
same numbers as a run that was never stopped.

The loop's helpers each have a module: the run folder and its files
(:mod:`~l2l_omniglot.run_folder`), the saved state and the seeds
(:mod:`~l2l_omniglot.run_state`), the tasks (:mod:`~l2l_omniglot.run_tasks`),
the ranks (:mod:`~l2l_omniglot.distributed`); the launch of one or several
processes is :mod:`~l2l_omniglot.launch`.
"""
from __future__ import annotations

import copy
import math
import os
import resource
import signal
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from l2l_omniglot.callbacks import CallbackList, RunCallbacks, RunWarning
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.distributed import Ranks, check_rank_members, check_splittable
from l2l_omniglot.errors import ConfigError, OmnimetaError, WriteError, first_line
from l2l_omniglot.evaluation import Score
from l2l_omniglot.leaks import seen_characters_record
from l2l_omniglot.precision import computing_in, slow_precision_warning
from l2l_omniglot.run_folder import Interrupted, RunFolder
from l2l_omniglot.run_state import load_saved_state, rng_state, seed_everything, set_rng_state
from l2l_omniglot.run_tasks import PHASES, RunTasks
from l2l_omniglot.solver_checks import checked_step_stats
from l2l_omniglot.solvers import SOLVERS, make_solver, solver_label
from l2l_omniglot.stats import StepStats
from l2l_omniglot.tensorboard_log import tensorboard_log
from l2l_omniglot.threads import describe_threads


class NumericalError(OmnimetaError):
    """The loss stopped being a finite number."""


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (and the GPU's peak allocation, on CUDA)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)


class _StopAfterIteration(KeyboardInterrupt):
    """A stop request, acted on between two iterations: the state is consistent, so it is saved."""


class Trainer:
    """One run: built (and checked) up front, then :meth:`run` trains, validates and tests.

    Building does all the checking, so a bad option fails before any file is
    written or any progress bar is drawn.

    With ``ranks`` (see :mod:`l2l_omniglot.distributed`) this is one rank of a
    data-parallel run: it trains on its shard of each meta-batch, scores its
    shard of the fixed tasks, and only rank 0 touches ``out_dir``.

    With ``test=False`` the run trains and validates only: no test task is
    built or scored, and the result has no test fields (``eval_seconds``,
    ``test_accuracy``, ``test_ci95``, ``test_tasks``). Settings are chosen
    this way, on validation tasks alone.
    """

    def __init__(self, config: RunConfig, omniglot, out_dir: Optional[Path] = None, force: bool = False,
                 checkpoint_every: int = 100, ranks: Optional[Ranks] = None, data_root: Optional[str] = None,
                 test: bool = True):
        self.config = config.validate()
        #: False: no test phase at all (``omnimeta tune``): its tasks are never built, :meth:`run` ends at validation.
        self.test = test
        if checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be at least 1 (got {checkpoint_every})")
        self.checkpoint_every = checkpoint_every
        self.ranks = ranks or Ranks()
        check_splittable(self.config, self.ranks.world_size, SOLVERS[config.solver])
        self.device = self.ranks.device if self.ranks.device is not None else resolve_device(config.device)
        #: Rank 0 alone writes; the other ranks, like a run without out_dir, keep nothing.
        self.folder = RunFolder.of(out_dir if self.ranks.is_main else None, force)
        self.folder.check()
        seed_everything(config.seed)
        self.tasks = RunTasks.build(config, omniglot, PHASES if test else ("train", "val"))
        #: The characters this run meets, by name, kept in checkpoint.pt so that predict needs no data.
        self.leak_record = seen_characters_record(config, omniglot)
        self.solver = make_solver(config, self.tasks.num_train_classes, self.device)
        if self.ranks.distributed:
            check_rank_members(self.solver, config.solver)
        self.iteration = 0
        self.elapsed = 0.0
        self.step_seconds = 0.0
        self.best = {"val_accuracy": -1.0, "iteration": 0, "state": None}
        #: True once the folder holds this run (a resumed run, or a new one after its first saved state).
        self.resumed = False
        #: The iteration of the last state saved to state.pt (what a hard stop falls back to).
        self.saved_iteration = None
        #: What :meth:`run` tells its callbacks before it starts (see :meth:`RunCallbacks.on_warning`).
        self.warnings = [w for w in [slow_precision_warning(config.precision, self.device)] if w]
        self._callback_stop = False
        #: Where the data came from (absolute), kept in state.pt so that --resume finds it again from anywhere.
        root = data_root if data_root is not None else getattr(omniglot, "root", None)
        self.data_root = os.path.abspath(os.path.expanduser(str(root))) if root else ""

    @property
    def out_dir(self) -> Optional[Path]:
        """The run folder this process writes (``None``: no folder, or a rank other than 0)."""
        return self.folder.path

    # -- resumable state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"iteration": self.iteration, "elapsed": self.elapsed, "step_seconds": self.step_seconds,
                "best": self.best, "rng": rng_state(), "data_root": self.data_root}

    def save_state(self) -> None:
        self.folder.save_state(self.config, self.solver.state_dict(), self.tasks.num_train_classes, self.state())
        self.saved_iteration = self.iteration

    @classmethod
    def resume(cls, out_dir: Path, omniglot, checkpoint_every: int = 100, ranks: Optional[Ranks] = None,
               test: bool = True) -> "Trainer":
        """Continue the run in ``out_dir`` from its last saved state, with its own config (on any number of ranks).

        Rank 0 takes the folder's lock first (:class:`~l2l_omniglot.run_folder.RunFolderLock`), so a
        second process working there is refused before anything is built.
        """
        out_dir = Path(out_dir)
        config, payload = load_saved_state(out_dir)
        folder = RunFolder.of(out_dir if ranks is None or ranks.is_main else None)
        folder.take_over()
        try:
            trainer = cls(config, omniglot, checkpoint_every=checkpoint_every, ranks=ranks, test=test)
            trainer.folder = folder
            trainer._restore(out_dir / "state.pt", payload)
            trainer.warnings += folder.repair(trainer.config, trainer.iteration)
        except BaseException:
            folder.release()
            raise
        return trainer

    def _restore(self, path: Path, payload: dict) -> None:
        saved = payload["trainer"]
        try:
            # The best state first, only to learn that it fits (the current state then replaces all of it).
            if saved["best"]["state"] is not None:
                self.solver.load_state_dict(saved["best"]["state"])
            self.solver.load_state_dict(payload["solver"])
            set_rng_state(saved["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            raise ConfigError(f"{path} holds a state that does not fit its {self.config.ways}-way "
                              f"{self.config.solver} model ({type(error).__name__}: {first_line(error, 120)}); "
                              f"restore state.pt from a backup, or start the run again with `omnimeta run --out "
                              f"{path.parent} --force`") from None
        self.iteration, self.elapsed, self.step_seconds = saved["iteration"], saved["elapsed"], saved["step_seconds"]
        self.best = saved["best"]
        self.saved_iteration = self.iteration
        self.resumed = True
        self.data_root = self.data_root or saved.get("data_root", "")

    # -- the run ---------------------------------------------------------------------------------------
    def run(self, callbacks: Optional[RunCallbacks] = None) -> dict:
        """Train to ``config.iterations``, then test the best validated state; returns ``result.json``'s dict."""
        # Every run with a folder also writes TensorBoard events there (when TensorBoard is installed).
        callbacks = CallbackList([callbacks or RunCallbacks(), tensorboard_log(self.out_dir, self.config)])
        try:
            for message in self.warnings:  # callbacks of a duck type may lack on_warning
                getattr(callbacks, "on_warning", RunCallbacks().on_warning)(message)
            callbacks.on_start(self)
            with computing_in(self.config.precision, self.device):
                self._train(callbacks)
                return self._finish(callbacks)
        finally:
            callbacks.on_finish()
            self.folder.release()

    def _train(self, callbacks: RunCallbacks) -> None:
        """Iterate to ``config.iterations``; a stop request saves the state and raises :class:`Interrupted`."""
        if not self.resumed:
            self.folder.start(self.config)
            self.save_state()  # so that a run killed at any point can be resumed
            self.resumed = True
        start = time.perf_counter() - self.elapsed
        try:
            with self.ranks.stop_on_interrupt():
                while self.iteration < self.config.iterations:
                    self._iterate(callbacks, start)
        except KeyboardInterrupt as stop:
            raise self._stopped(stop) from None
        except WriteError as error:
            if self.saved_iteration is None:
                raise
            raise WriteError(f"{error}; then continue from iteration {self.saved_iteration} with: "
                             f"{self.folder.resume_command}") from None
        self.save_state()

    def _iterate(self, callbacks: RunCallbacks, start: float) -> None:
        """One iteration: a meta-step, validation when due, its line in metrics.jsonl, a stop when asked."""
        config = self.config
        iteration = self.iteration + 1
        stats = self._meta_step(iteration)
        record = {"iteration": iteration, "loss": stats.loss, "train_accuracy": stats.accuracy}
        self._call(callbacks.on_step, iteration, stats, time.perf_counter() - start)
        if iteration % config.val_every == 0 or iteration == config.iterations:
            record.update(self._validate(iteration, callbacks))
        self.iteration = iteration
        self.elapsed = time.perf_counter() - start
        record["seconds"] = round(self.elapsed, 3)
        self.folder.append_metrics(record)
        if iteration % self.checkpoint_every == 0:
            self.save_state()
        if self._callback_stop:
            self.ranks.request_stop()  # rank 0's callbacks alone: across ranks, all agree at the next step
        # A stop request (on some rank): all stop here, after the same iteration, with a whole state.
        if self.ranks.stop_agreed:
            raise _StopAfterIteration

    def _meta_step(self, iteration: int) -> StepStats:
        """The solver's step on this rank's share of task batch ``iteration``; a non-finite loss stops the run."""
        config = self.config
        own_tasks = self.ranks.shard(config.meta_batch)
        tasks = self.tasks.samplers["train"].sample(config.seed, iteration, len(own_tasks), first=own_tasks.start)
        step_start = time.perf_counter()
        stats = checked_step_stats(self.solver, self.ranks.meta_train_step(self.solver, tasks, config.meta_batch))
        self.step_seconds += time.perf_counter() - step_start
        if not math.isfinite(stats.loss):
            raise NumericalError(
                f"solver {config.solver}: the training loss became {stats.loss} at iteration {iteration}; the learning "
                f"rates are likely too "
                f"high (--meta-lr {config.meta_lr}, or the solver's own, see `omnimeta solvers`): lower them and "
                f"rerun.{self.folder.last_good_state_note()}")
        return stats

    def _validate(self, iteration: int, callbacks: RunCallbacks) -> dict:
        """Score the fixed validation tasks; keep (and write) the state when it is the best so far."""
        score = Score.of(self.ranks.per_task_accuracy(self.solver, self.tasks.val_tasks))
        self._call(callbacks.on_validation, iteration, score)
        if score.accuracy > self.best["val_accuracy"]:
            self.best = {"val_accuracy": score.accuracy, "iteration": iteration,
                         "state": copy.deepcopy(self.solver.state_dict())}
            self.folder.save_best(self.config, self.best["state"], self.tasks.num_train_classes, iteration,
                                  score.accuracy, leak_record=self.leak_record)
        return {"val_accuracy": score.accuracy, "val_ci95": score.ci95}

    def _stopped(self, stop: KeyboardInterrupt) -> BaseException:
        """What a stop raises: :class:`Interrupted` saying how to continue (a run without a folder: ``stop``)."""
        name = signal.Signals(self.ranks.stop_signal).name
        if isinstance(stop, _StopAfterIteration):
            self.save_state()
            return self.folder.interrupted(
                stop, f"interrupted by {name} at iteration {self.iteration}; the state is saved. Continue with: "
                      f"{self.folder.resume_command}", self.ranks.stop_signal)
        # A second signal stopped the run in the middle of an iteration: what the solver holds now belongs to
        # no iteration, so the last saved state stays (saving this one would make the resumed run differ).
        return self.folder.interrupted(
            stop, f"stopped at once by a second {name} in iteration {self.iteration + 1}; the state saved at "
                  f"iteration {self.saved_iteration} is kept. Continue with: {self.folder.resume_command}",
            self.ranks.stop_signal)

    def _call(self, callback: Callable, *args) -> None:
        """A callback that raises KeyboardInterrupt asks the run to stop after this iteration (and save)."""
        try:
            callback(*args)
        except KeyboardInterrupt:
            self._callback_stop = True

    # -- the end ---------------------------------------------------------------------------------------
    def _finish(self, callbacks: RunCallbacks) -> dict:
        """Load the best validated state, score it on the test tasks (if any) and write ``result.json``."""
        self.solver.load_state_dict(self.best["state"])
        eval_start = time.perf_counter()
        test = self._score_test(callbacks) if self.test else None
        result = self._result(test, time.perf_counter() - eval_start)
        self.folder.write_result(result)
        return result

    def _score_test(self, callbacks: RunCallbacks) -> Score:
        callbacks.on_eval_start(len(self.tasks.test_tasks))
        try:
            with self.ranks.stop_on_interrupt(immediate=True):
                return Score.of(self.ranks.per_task_accuracy(self.solver, self.tasks.test_tasks,
                                                             progress=callbacks.on_eval_progress))
        except KeyboardInterrupt as stop:
            raise self.folder.interrupted(
                stop, f"interrupted by {signal.Signals(self.ranks.stop_signal).name} during the final test; "
                      f"training is complete and saved. Finish with: {self.folder.resume_command}",
                self.ranks.stop_signal) from None

    def _result(self, test: Optional[Score], eval_seconds: float) -> dict:
        """``result.json``: the run's settings, its times, and its scores (no test fields without a test)."""
        config = self.config
        result = {
            "solver": config.solver,
            "label": solver_label(config),
            "options": config.options,
            "ways": config.ways,
            "shots": config.shots,
            "split": config.split,
            "augment": config.augment,
            "seed": config.seed,
            "device": str(self.device),
            "ranks": self.ranks.world_size,
            **describe_threads(),
            "iterations": config.iterations,
            "best_iteration": self.best["iteration"],
            "train_seconds": round(self.elapsed, 3),
            "step_seconds": round(self.step_seconds, 3),
            "iterations_per_second": round(config.iterations / max(self.step_seconds, 1e-9), 3),
        }
        if test is not None:
            result["eval_seconds"] = round(eval_seconds, 3)
        result["val_accuracy"] = self.best["val_accuracy"]
        if test is not None:
            result.update(test_accuracy=test.accuracy, test_ci95=test.ci95, test_tasks=test.tasks)
        result["peak_rss_mb"] = peak_memory_mb()
        return result


def train_and_evaluate(config: RunConfig, omniglot, out_dir: Optional[Path] = None, force: bool = False,
                       checkpoint_every: int = 100, callbacks: Optional[RunCallbacks] = None,
                       test: bool = True) -> dict:
    """Meta-train ``config.solver``, keep the best validated state, score it on the test tasks.

    With ``out_dir`` the run folder gets ``config.json``, ``metrics.jsonl``,
    ``checkpoint.pt``, ``state.pt`` (every ``checkpoint_every`` iterations)
    and ``result.json``, and :func:`resume_training` continues it. With
    ``test=False`` no test task is built or scored (see :class:`Trainer`).
    """
    return Trainer(config, omniglot, out_dir, force, checkpoint_every, test=test).run(callbacks)


def resume_training(out_dir: Path, omniglot, checkpoint_every: int = 100,
                    callbacks: Optional[RunCallbacks] = None, test: bool = True) -> dict:
    """Continue the run in ``out_dir`` from its saved state; ends with the numbers of an unstopped run."""
    return Trainer.resume(out_dir, omniglot, checkpoint_every, test=test).run(callbacks)


__all__ = ["Interrupted", "NumericalError", "RunCallbacks", "RunWarning", "Trainer", "peak_memory_mb",
           "resume_training", "train_and_evaluate"]
