"""The meta-training loop: tasks in, a validated solver and a test score out.

:func:`train_and_evaluate` is what ``omnimeta run`` calls, and what an
importing user calls::

    from l2l_omniglot import load_omniglot, resolve_config, train_and_evaluate
    config = resolve_config("fomaml", iterations=200)
    result = train_and_evaluate(config, load_omniglot("path/to/omniglot"), out_dir="runs/demo")
    print(result["test_accuracy"], result["test_ci95"])

Each iteration draws task batch ``iteration`` of the seed's stream (see
:mod:`l2l_omniglot.data.tasks`) and asks the solver for one step. Every
``val_every`` iterations the solver is scored on the fixed validation tasks,
and the best state so far is kept (and written to ``checkpoint.pt``). At the
end that best state is scored on the fixed test tasks.

Every ``checkpoint_every`` iterations, and on Ctrl-C, the whole loop state
(solver, optimizer, iteration, best state, random generators) goes to
``state.pt``; :meth:`Trainer.resume` continues from it and ends with the
same numbers as a run that was never stopped.
"""
from __future__ import annotations

import copy
import fcntl
import json
import math
import os
import random
import resource
import sys
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from l2l_omniglot.atomic import write_json, write_text
from l2l_omniglot.checkpoint import load_checkpoint, save_checkpoint
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.data.splits import make_split
from l2l_omniglot.data.tasks import TEST_STREAM, VALIDATION_STREAM, fixed_tasks, phase_samplers
from l2l_omniglot.data.omniglot import load_omniglot
from l2l_omniglot.distributed import Ranks, check_splittable, launch_local_ranks, launched_as_rank
from l2l_omniglot.errors import ConfigError, OmnimetaError
from l2l_omniglot.evaluation import Score
from l2l_omniglot.solvers import SOLVERS, make_solver, solver_label

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json", "state.pt")


class NumericalError(OmnimetaError):
    """The loss stopped being a finite number."""


class Interrupted(OmnimetaError):
    """The run was stopped by a signal (Ctrl-C, SIGTERM); its state was saved. Exit status 128 + the signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (and the GPU's peak allocation, on CUDA)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)


def rng_state() -> dict:
    """Every generator's state, as tensors and plain data (checkpoint-safe)."""
    version, internal, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": torch.tensor(internal, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
            "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_position": int(position),
            "numpy_gauss": [int(has_gauss), float(cached)], "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_position"],
                         has_gauss, cached))
    torch.set_rng_state(state["torch"])


def check_out_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse, before any work, a run folder that is a file, unwritable or holds another run.

    Writability is tried, not inferred from permission bits (which root ignores): a
    probe file is made and removed, or the folder is made and removed again.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder path")
    if out_dir.is_dir() and any((out_dir / name).exists() for name in RUN_FILES) and not force:
        raise ConfigError(f"--out {out_dir} already holds a run; choose another folder, --resume it, or add --force")
    try:
        if out_dir.is_dir():
            probe = out_dir / ".omnimeta-write-probe"
            probe.write_text("")
            probe.unlink()
        else:
            created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
            out_dir.mkdir(parents=True)
            for folder in created:
                folder.rmdir()
    except OSError as error:
        raise ConfigError(f"--out {out_dir} is not writable ({error.strerror}); choose another folder")


def prepare_out_dir(out_dir: Path, force: bool = False) -> Path:
    """Check the run folder (see :func:`check_out_dir`) and create it."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {out_dir} cannot be created ({error.strerror}); choose another folder")
    return out_dir


@dataclass
class Benchmark:
    """The task samplers and fixed evaluation tasks a config asks for."""

    samplers: dict
    val_tasks: object
    test_tasks: object

    @staticmethod
    def build(config: RunConfig, omniglot, phases=("train", "val", "test")) -> "Benchmark":
        """Samplers for ``phases``: validation and test give the run's shape; training the solver's.

        A solver with a ``train_task_shape(config)`` hook (see :class:`~l2l_omniglot.solvers.base.Solver`)
        meta-trains on tasks of the shape it returns; every other solver on the run's own shape.
        """
        split = make_split(config.split, omniglot)
        run_shape = (config.ways, config.shots, config.queries)
        hook = getattr(SOLVERS[config.solver], "train_task_shape", None) if "train" in phases else None
        train_shape = tuple(hook(config)) if callable(hook) else run_shape
        samplers = {}
        if "train" in phases and train_shape != run_shape:
            try:
                samplers = phase_samplers(omniglot, split, *train_shape, config.augment, ("train",))
            except ConfigError as error:
                ways, shots, queries = train_shape
                raise ConfigError(f"{config.solver} meta-trains on {ways}-way {shots}-shot tasks with {queries} "
                                  f"queries per class (its train_task_shape), which the {config.split} split "
                                  f"cannot give ({error}); change that solver's options") from None
            phases = tuple(phase for phase in phases if phase != "train")
        samplers.update(phase_samplers(omniglot, split, *run_shape, config.augment, phases) if phases else {})
        val = fixed_tasks(samplers["val"], config.val_tasks, VALIDATION_STREAM) if "val" in samplers else None
        test = fixed_tasks(samplers["test"], config.eval_tasks, TEST_STREAM) if "test" in samplers else None
        return Benchmark(samplers, val, test)

    @property
    def num_train_classes(self) -> int:
        return self.samplers["train"].dataset.num_classes


def metric_lines_up_to(path: Path, iteration: int) -> list:
    """The whole lines of ``metrics.jsonl`` up to ``iteration``; a line torn by a kill is dropped."""
    kept = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            if json.loads(line)["iteration"] <= iteration:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    return kept


LOCK_FILE = ".omnimeta.lock"


class RunFolderLock:
    """One writer per run folder: an exclusive ``flock`` on ``RUN_DIR/.omnimeta.lock``, held while a run works.

    The kernel drops the lock when its process ends, however it ends, so a
    killed run never leaves it stale; the file keeps the holder's pid only to
    name it in the refusal.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.handle = None

    def acquire(self) -> "RunFolderLock":
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(f"{self.path.parent} is in use by {holder}; wait for that run to end or stop it, "
                              f"then retry") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (omnimeta run on {socket.gethostname()})")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def load_saved_state(out_dir: Path) -> tuple:
    """``(config, payload)`` of the resumable state in a run folder, or a ConfigError saying how to make one."""
    out_dir = Path(out_dir)
    if not (out_dir / "state.pt").is_file():
        raise ConfigError(f"--resume {out_dir}: no saved state (state.pt) there; start it with `omnimeta run --out`")
    return load_checkpoint(out_dir / "state.pt", expect=("trainer",))


class RunCallbacks:
    """What a run reports while it works; every method is optional (override the ones you need).

    The command line draws progress bars with one of these; a script can log,
    plot or stop early (raise ``KeyboardInterrupt`` to stop and save).
    """

    def on_start(self, trainer: "Trainer") -> None:
        """The run is built and about to train from ``trainer.iteration`` to ``trainer.config.iterations``."""

    def on_step(self, iteration: int, stats, seconds: float) -> None:
        """Iteration ``iteration`` is done; ``seconds`` of training so far."""

    def on_validation(self, iteration: int, score: Score) -> None:
        """The validation score after ``iteration``."""

    def on_eval_start(self, tasks: int) -> None:
        """The final test on ``tasks`` fixed tasks begins."""

    def on_eval_progress(self, done: int) -> None:
        """``done`` more test tasks are scored."""

    def on_finish(self) -> None:
        """The run ended (finished, interrupted or failed)."""


class Trainer:
    """One run: built (and checked) up front, then :meth:`run` trains, validates and tests.

    Building does all the checking, so a bad option fails before any file is
    written or any progress bar is drawn.

    With ``ranks`` (see :mod:`l2l_omniglot.distributed`) this is one rank of a
    data-parallel run: it trains on its shard of each meta-batch, scores its
    shard of the fixed tasks, and only rank 0 touches ``out_dir``.
    """

    def __init__(self, config: RunConfig, omniglot, out_dir: Optional[Path] = None, force: bool = False,
                 checkpoint_every: int = 100, ranks: Optional[Ranks] = None, data_root: Optional[str] = None):
        self.config = config.validate()
        if checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be at least 1 (got {checkpoint_every})")
        self.checkpoint_every = checkpoint_every
        self.ranks = ranks or Ranks()
        check_splittable(self.config, self.ranks.world_size, SOLVERS[config.solver])
        self.device = self.ranks.device if self.ranks.device is not None else resolve_device(config.device)
        out_dir = out_dir if self.ranks.is_main else None
        if out_dir is not None:
            check_out_dir(out_dir, force)
        seed_everything(config.seed)
        self.benchmark = Benchmark.build(config, omniglot)
        self.solver = make_solver(config, self.benchmark.num_train_classes, self.device)
        self.iteration = 0
        self.elapsed = 0.0
        self.step_seconds = 0.0
        self.best = {"val_accuracy": -1.0, "iteration": 0, "state": None}
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.force = force
        self.resumed = False
        self.lock = None
        #: Where the data came from, kept in state.pt so that --resume finds it again.
        self.data_root = str(data_root) if data_root is not None else str(getattr(omniglot, "root", "") or "")

    # -- resumable state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"iteration": self.iteration, "elapsed": self.elapsed, "step_seconds": self.step_seconds,
                "best": self.best, "rng": rng_state(), "data_root": self.data_root}

    def save_state(self) -> None:
        if self.out_dir is not None:
            save_checkpoint(self.out_dir / "state.pt", self.config, self.solver.state_dict(),
                            self.benchmark.num_train_classes, trainer=self.state())

    @classmethod
    def resume(cls, out_dir: Path, omniglot, checkpoint_every: int = 100, ranks: Optional[Ranks] = None) -> "Trainer":
        """Continue the run in ``out_dir`` from its last saved state, with its own config (on any number of ranks)."""
        out_dir = Path(out_dir)
        config, payload = load_saved_state(out_dir)
        trainer = cls(config, omniglot, out_dir=None, checkpoint_every=checkpoint_every, ranks=ranks)
        trainer.out_dir = out_dir if trainer.ranks.is_main else None
        if trainer.out_dir is not None:
            trainer.lock = RunFolderLock(out_dir).acquire()  # before anything in the folder changes
        trainer.resumed = True
        saved = payload["trainer"]
        try:
            trainer.solver.load_state_dict(payload["solver"])
            trainer.iteration, trainer.elapsed, trainer.step_seconds = (int(saved["iteration"]), saved["elapsed"],
                                                                        saved["step_seconds"])
            trainer.best = saved["best"]
            set_rng_state(saved["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            raise ConfigError(f"{out_dir / 'state.pt'} holds an incomplete state ({type(error).__name__}: "
                              f"{str(error)[:120]}); start the run again") from None
        trainer.data_root = saved.get("data_root", trainer.data_root)
        if trainer.out_dir is not None:
            metrics = out_dir / "metrics.jsonl"
            write_text(metrics, "".join(line + "\n" for line in metric_lines_up_to(metrics, trainer.iteration)))
        return trainer

    # -- the loop --------------------------------------------------------------------------------------
    def _start_out_dir(self) -> None:
        prepare_out_dir(self.out_dir, self.force)
        self.lock = RunFolderLock(self.out_dir).acquire()
        check_out_dir(self.out_dir, self.force)  # another run may have started here since the first check
        for stale in ("checkpoint.pt", "result.json", "state.pt", "restarts.jsonl"):
            (self.out_dir / stale).unlink(missing_ok=True)
        write_json(self.out_dir / "config.json", self.config.to_dict())
        write_text(self.out_dir / "metrics.jsonl", "")

    def _save_best(self, iteration: int, val_accuracy: float) -> None:
        save_checkpoint(self.out_dir / "checkpoint.pt", self.config, self.best["state"],
                        self.benchmark.num_train_classes, iteration=iteration, val_accuracy=val_accuracy)

    def run(self, callbacks: Optional[RunCallbacks] = None) -> dict:
        """Train to ``config.iterations``, then test the best validated state; returns ``result.json``'s dict."""
        callbacks = callbacks or RunCallbacks()
        callbacks.on_start(self)
        try:
            self._train(callbacks)
            return self._test(callbacks)
        finally:
            callbacks.on_finish()
            if self.lock is not None:
                self.lock.release()

    def _train(self, callbacks: RunCallbacks) -> None:
        config, out_dir = self.config, self.out_dir
        if out_dir is not None and not self.resumed:
            self._start_out_dir()
            self.save_state()  # so that a run killed at any point can be resumed
            self.resumed = True
        train_sampler = self.benchmark.samplers["train"]
        own_tasks = self.ranks.shard(config.meta_batch)
        start = time.perf_counter() - self.elapsed
        try:
            with self.ranks.stop_on_interrupt():
                while self.iteration < config.iterations:
                    iteration = self.iteration + 1
                    tasks = train_sampler.sample(config.seed, iteration, len(own_tasks), first=own_tasks.start)
                    step_start = time.perf_counter()
                    stats = self.ranks.meta_train_step(self.solver, tasks, config.meta_batch)
                    self.step_seconds += time.perf_counter() - step_start
                    if not math.isfinite(stats.loss):
                        kept = f" The last good state is kept in {out_dir}." if out_dir is not None else ""
                        raise NumericalError(
                            f"the training loss became {stats.loss} at iteration {iteration}; the learning rates are "
                            f"likely too high (--meta-lr {config.meta_lr}, or the solver's own, see `omnimeta "
                            f"solvers`): lower them and rerun.{kept}")
                    record = {"iteration": iteration, "loss": stats.loss, "train_accuracy": stats.accuracy}
                    callbacks.on_step(iteration, stats, time.perf_counter() - start)
                    if iteration % config.val_every == 0 or iteration == config.iterations:
                        score = Score.of(self.ranks.per_task_accuracy(self.solver, self.benchmark.val_tasks))
                        record.update(val_accuracy=score.accuracy, val_ci95=score.ci95)
                        callbacks.on_validation(iteration, score)
                        if score.accuracy > self.best["val_accuracy"]:
                            self.best = {"val_accuracy": score.accuracy, "iteration": iteration,
                                         "state": copy.deepcopy(self.solver.state_dict())}
                            if out_dir is not None:
                                self._save_best(iteration, score.accuracy)
                    self.iteration = iteration
                    self.elapsed = time.perf_counter() - start
                    record["seconds"] = round(self.elapsed, 3)
                    if out_dir is not None:
                        with open(out_dir / "metrics.jsonl", "a") as metrics:
                            metrics.write(json.dumps(record) + "\n")
                        if iteration % self.checkpoint_every == 0:
                            self.save_state()
                    if self.ranks.stop_agreed:  # a stop request on some rank: all stop here, after the same iteration
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if out_dir is None:
                raise
            self.save_state()
            raise Interrupted(f"interrupted at iteration {self.iteration}; the state is saved. "
                              f"Continue with: omnimeta run --resume {out_dir}", self.ranks.stop_signal) from None
        self.save_state()

    def _test(self, callbacks: RunCallbacks) -> dict:
        config = self.config
        self.solver.load_state_dict(self.best["state"])
        callbacks.on_eval_start(len(self.benchmark.test_tasks))
        eval_start = time.perf_counter()
        try:
            with self.ranks.stop_on_interrupt(immediate=True):
                test = Score.of(self.ranks.per_task_accuracy(self.solver, self.benchmark.test_tasks,
                                                             progress=callbacks.on_eval_progress))
        except KeyboardInterrupt:
            if self.out_dir is None:
                raise
            raise Interrupted(f"interrupted during the final test; training is complete and saved. "
                              f"Finish with: omnimeta run --resume {self.out_dir}", self.ranks.stop_signal) from None
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
            "threads": torch.get_num_threads(),
            "iterations": config.iterations,
            "best_iteration": self.best["iteration"],
            "train_seconds": round(self.elapsed, 3),
            "step_seconds": round(self.step_seconds, 3),
            "iterations_per_second": round(config.iterations / max(self.step_seconds, 1e-9), 3),
            "eval_seconds": round(time.perf_counter() - eval_start, 3),
            "val_accuracy": self.best["val_accuracy"],
            "test_accuracy": test.accuracy,
            "test_ci95": test.ci95,
            "test_tasks": test.tasks,
            "peak_rss_mb": peak_memory_mb(),
        }
        if self.out_dir is not None:
            write_json(self.out_dir / "result.json", result)
        return result


def train_and_evaluate(config: RunConfig, omniglot, out_dir: Optional[Path] = None, force: bool = False,
                       checkpoint_every: int = 100, callbacks: Optional[RunCallbacks] = None) -> dict:
    """Meta-train ``config.solver``, keep the best validated state, score it on the test tasks.

    With ``out_dir`` the run folder gets ``config.json``, ``metrics.jsonl``,
    ``checkpoint.pt``, ``state.pt`` (every ``checkpoint_every`` iterations)
    and ``result.json``, and :func:`resume_training` continues it.
    """
    return Trainer(config, omniglot, out_dir, force, checkpoint_every).run(callbacks)


def resume_training(out_dir: Path, omniglot, checkpoint_every: int = 100,
                    callbacks: Optional[RunCallbacks] = None) -> dict:
    """Continue the run in ``out_dir`` from its saved state; ends with the numbers of an unstopped run."""
    return Trainer.resume(out_dir, omniglot, checkpoint_every).run(callbacks)


@dataclass
class RunRequest:
    """Everything that starts (or continues) one run, in plain data, so it can be handed to ranks.

    ``config`` is set for a new run; ``resume`` continues ``out_dir`` with
    the config saved there. ``data_root`` of a resumed run defaults to the
    one it was started with.
    """

    out_dir: Path
    config: Optional[RunConfig] = None
    resume: bool = False
    force: bool = False
    checkpoint_every: int = 100
    data_root: Optional[str] = None
    backend: str = "auto"
    dist_timeout: float = 120.0
    #: Local ranks started by :func:`run_training` (1: this process).
    nproc: int = 1
    #: Restarts of the whole group when a local rank dies (each continues from the last saved state).
    max_restarts: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if (self.config is None) == (not self.resume):
            raise ConfigError("a run needs a config to start, or resume=True to continue one")


def _run_this_process(request: RunRequest, callbacks: Optional[RunCallbacks], load_data: Callable) -> dict:
    """One process of a run: join the ranks (if any), build or resume the trainer, train, test."""
    config = request.config if request.config is not None else load_saved_state(request.out_dir)[0]
    ranks = Ranks.join(config.device, request.backend, request.dist_timeout)
    try:
        # Rank 0 loads (or decodes) the data first, so that the others find it cached.
        omniglot = ranks.agree(lambda: load_data() if ranks.is_main else None)
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

        def build() -> Trainer:
            data = omniglot if omniglot is not None else load_data()
            if request.resume or restart > 0:
                return Trainer.resume(request.out_dir, data, request.checkpoint_every, ranks)
            return Trainer(config, data, request.out_dir, request.force, request.checkpoint_every, ranks,
                           data_root=request.data_root)

        trainer = ranks.agree(build)
        if restart > 0 and trainer.out_dir is not None:
            with open(trainer.out_dir / "restarts.jsonl", "a") as log:
                log.write(json.dumps({"restart": restart, "resumed_from_iteration": trainer.iteration,
                                      "time": time.time()}) + "\n")
        return trainer.run(callbacks if ranks.is_main else None)
    finally:
        ranks.close()


def _data_loader(request: RunRequest, callbacks: Optional[RunCallbacks]) -> Callable:
    root = request.data_root
    if root is None and request.resume:
        _, payload = load_saved_state(request.out_dir)
        root = payload["trainer"].get("data_root") or None
    progress = getattr(callbacks, "on_decode", None)
    return lambda: load_omniglot(root, progress=progress)


def _rank_main(request: RunRequest, callbacks: Optional[RunCallbacks]) -> Optional[dict]:
    """The entry point of each local rank (see :func:`run_training`): errors end the rank with their status."""
    try:
        return _run_this_process(request, callbacks, _data_loader(request, callbacks))
    except OmnimetaError as error:
        if getattr(error, "reported_by_every_rank", False) or int(os.environ.get("RANK", "0")) == 0:
            print(str(error) if isinstance(error, Interrupted) else f"Error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_training(request: RunRequest, callbacks: Optional[RunCallbacks] = None) -> Optional[dict]:
    """Run (or continue) a whole run: on this process, as one rank of torchrun, or on ``request.nproc`` local ranks.

    This is the run lifecycle ``omnimeta run`` uses, for any user script too.
    Returns ``result.json``'s dict (``None`` on ranks other than 0).
    """
    if request.nproc > 1:
        if launched_as_rank():
            raise ConfigError("--nproc starts its own ranks; under torchrun leave it out")
        config = request.config if request.config is not None else load_saved_state(request.out_dir)[0]
        check_splittable(config, request.nproc, SOLVERS[config.solver])
        if not request.resume:
            check_out_dir(request.out_dir, request.force)
        _data_loader(request, callbacks)()  # a missing data set fails here once; a first load decodes it for all
        hint = (f"The last saved state is in {request.out_dir}; continue with: "
                f"omnimeta run --resume {request.out_dir} --nproc {request.nproc}")
        return launch_local_ranks(_rank_main, (request, callbacks), request.nproc, request.max_restarts, hint)
    return _run_this_process(request, callbacks, _data_loader(request, callbacks))
