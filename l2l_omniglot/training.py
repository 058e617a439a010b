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

import contextlib
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
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from l2l_omniglot.atomic import append_text, write_json, write_text
from l2l_omniglot.callbacks import CallbackList, RunCallbacks, RunWarning
from l2l_omniglot.checkpoint import load_checkpoint, save_checkpoint
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.data.splits import make_split
from l2l_omniglot.data.tasks import TEST_STREAM, VALIDATION_STREAM, fixed_tasks, phase_samplers
from l2l_omniglot.data.omniglot import load_omniglot
from l2l_omniglot.distributed import (PeerLostError, Ranks, check_splittable, launch_local_ranks, launched_as_rank,
                                      wait_to_be_stopped)
from l2l_omniglot.errors import ConfigError, OmnimetaError, WriteError, first_line
from l2l_omniglot.evaluation import Score
from l2l_omniglot.leaks import seen_characters_record
from l2l_omniglot.solver_checks import checked_step_stats
from l2l_omniglot.tensorboard_log import EVENT_FILE_PREFIX, tensorboard_log
from l2l_omniglot.solvers import SOLVERS, make_solver, solver_label
from l2l_omniglot.threads import configure_threads, describe_threads, task_threads

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


def check_out_dir(out_dir: Path, force: bool = False, check_lock: bool = True) -> None:
    """Refuse, before any work, a run folder that is a file, unwritable, in use or holds another run.

    Writability is tried, not inferred from permission bits (which root ignores): a
    probe file is made and removed, or the folder is made and removed again. A
    folder another process works in (:class:`RunFolderLock`) is refused even with
    ``force``; ``check_lock=False`` is for the process that holds the lock itself.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder path")
    if check_lock and out_dir.is_dir():
        RunFolderLock.check(out_dir)
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
    """The lines of ``metrics.jsonl`` for iterations 1 .. ``iteration``, each once, in order.

    A line torn by a kill (not JSON, or without an integer ``iteration``) is
    left out (``--resume`` keeps it in :data:`UNREADABLE_METRICS`), and so is a
    repeated iteration (two writers, once possible) after its first line. :func:`missing_iterations` tells what is then lacking.
    """
    kept = {}
    try:
        text = path.read_text(errors="replace") if path.exists() else ""
    except OSError:
        text = ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
            number = record["iteration"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= iteration:
            kept.setdefault(number, line)
    return [kept[number] for number in sorted(kept)]


#: Where --resume keeps the lines of metrics.jsonl it cannot read, rather than drop them.
UNREADABLE_METRICS = "metrics-unreadable.txt"


def unreadable_metric_lines(text: str) -> list:
    """The lines of a ``metrics.jsonl`` text that are no record: not JSON, or with no integer ``iteration``."""
    unreadable = []
    for line in text.splitlines():
        try:
            number = json.loads(line)["iteration"]
        except (ValueError, KeyError, TypeError):
            number = None
        if line.strip() and (not isinstance(number, int) or isinstance(number, bool)):
            unreadable.append(line)
    return unreadable


def missing_iterations(lines: list, iteration: int) -> list:
    """The iterations 1 .. ``iteration`` that no line of :func:`metric_lines_up_to` holds."""
    present = {json.loads(line)["iteration"] for line in lines}
    return [number for number in range(1, iteration + 1) if number not in present]


def describe_numbers(numbers: list, limit: int = 4) -> str:
    """``1-3, 7, 9-12`` for [1, 2, 3, 7, 9, 10, 11, 12] (at most ``limit`` ranges, then ``...``)."""
    ranges = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges]
    return ", ".join(text[:limit]) + (", ..." if len(text) > limit else "")


LOCK_FILE = ".omnimeta.lock"


class RunFolderLock:
    """One writer per run folder: an exclusive ``flock`` on ``RUN_DIR/.omnimeta.lock``, held while a run works.

    The kernel drops the lock when its process ends, however it ends, so a
    killed run never leaves it stale (its file stays, with no lock on it, and
    the next run takes it over); the file keeps the holder's pid only to name
    it in the refusal. A run that ends removes the file: it does so while it
    still holds the lock, and :meth:`acquire` checks that the file it locked is
    still the one at the path, so two runs can never both hold "the" lock.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.handle = None

    @staticmethod
    def _refusal(path: Path, handle) -> ConfigError:
        try:
            handle.seek(0)
            holder = handle.read(200).strip()
        except (OSError, ValueError):
            holder = ""
        return ConfigError(f"{path.parent} is in use by {holder or 'another process'}; wait for that run to end "
                           f"or stop it, then retry")

    def acquire(self) -> "RunFolderLock":
        for _ in range(100):  # a new file appears only when a holder ends between our open and our flock
            try:
                handle = open(self.path, "a+")
            except OSError as error:
                raise ConfigError(f"cannot lock {self.path} ({error.strerror}); make {self.path.parent} writable "
                                  f"or choose another folder") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                error = self._refusal(self.path, handle)
                handle.close()
                raise error from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it as it ended: lock the file now at the path
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} (omnimeta run on {socket.gethostname()})")
            handle.flush()
            self.handle = handle
            return self
        raise ConfigError(f"{self.path} keeps being replaced; check what else writes into {self.path.parent}")

    @classmethod
    def check(cls, out_dir: Path) -> None:
        """Refuse at once, with the holder's name, a folder that another process holds; takes nothing itself."""
        path = Path(out_dir) / LOCK_FILE
        try:
            handle = open(path, "r")
        except OSError:
            return  # no lock file: no run works there (the real acquire decides in any case)
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise cls._refusal(path, handle) from None
            fcntl.flock(handle, fcntl.LOCK_UN)

    def release(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still held: see the class's note
            self.handle.close()  # closing drops the flock
            self.handle = None


#: What the trainer part of ``state.pt`` holds, and the types each must have.
TRAINER_STATE = {"iteration": int, "elapsed": (int, float), "step_seconds": (int, float), "best": dict, "rng": dict}
BEST_STATE = {"val_accuracy": (int, float), "iteration": int, "state": (dict, type(None))}
RNG_STATE = ("python", "python_version", "python_gauss", "numpy", "numpy_position", "numpy_gauss", "torch")


def check_trainer_state(path: Path, config: RunConfig, saved: dict) -> None:
    """Refuse, naming the file, a trainer part of ``state.pt`` with missing or ill-typed entries."""
    def wrong(what: str) -> ConfigError:
        return ConfigError(f"{path} holds an incomplete or damaged state ({what}); a run cannot continue from it: "
                           f"restore state.pt from a backup, or start the run again with `omnimeta run --out "
                           f"{path.parent} --force`")

    for table, part, name in ((TRAINER_STATE, saved, "trainer"), (BEST_STATE, saved.get("best"), "trainer.best")):
        if not isinstance(part, dict):
            raise wrong(f"{name} is not a mapping")
        for key, kind in table.items():
            value = part.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise wrong(f"{name}.{key} is {'missing' if key not in part else type(value).__name__}")
    missing = [key for key in RNG_STATE if key not in saved["rng"]]
    if missing:
        raise wrong(f"trainer.rng lacks {', '.join(missing)}")
    if not 0 <= saved["iteration"] <= config.iterations:
        raise wrong(f"iteration {saved['iteration']} is outside 0 .. {config.iterations}")
    if not all(math.isfinite(saved[key]) and saved[key] >= 0 for key in ("elapsed", "step_seconds")):
        raise wrong("a negative or non-finite time")
    if saved["best"]["state"] is None and saved["best"]["iteration"] != 0:
        raise wrong("trainer.best has an iteration but no state")
    if not isinstance(saved.get("data_root", ""), str):
        raise wrong(f"trainer.data_root is {type(saved['data_root']).__name__}, not a path")


def load_saved_state(out_dir: Path) -> tuple:
    """``(config, payload)`` of the resumable state in a run folder, or a ConfigError saying how to make one.

    Its trainer part is checked too (:func:`check_trainer_state`), so every
    reader (the command line, the data loader, each rank) meets a bad file as
    one line.
    """
    out_dir = Path(out_dir)
    if not (out_dir / "state.pt").is_file():
        raise ConfigError(f"--resume {out_dir}: no saved state (state.pt) there; start it with `omnimeta run --out`")
    config, payload = load_checkpoint(out_dir / "state.pt", expect=("trainer",))
    check_trainer_state(out_dir / "state.pt", config, payload["trainer"])
    return config, payload


class _StopAfterIteration(KeyboardInterrupt):
    """A stop request, acted on between two iterations: the state is consistent, so it is saved."""


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
        #: The characters this run meets, by name, kept in checkpoint.pt so that predict needs no data.
        self.leak_record = seen_characters_record(config, omniglot)
        self.solver = make_solver(config, self.benchmark.num_train_classes, self.device)
        self.iteration = 0
        self.elapsed = 0.0
        self.step_seconds = 0.0
        self.best = {"val_accuracy": -1.0, "iteration": 0, "state": None}
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.force = force
        self.resumed = False
        self.lock = None
        #: The iteration of the last state saved to state.pt (what a hard stop falls back to).
        self.saved_iteration = None
        #: What :meth:`run` tells its callbacks before it starts (see :meth:`RunCallbacks.on_warning`).
        self.warnings = []
        self._callback_stop = False
        #: Where the data came from (absolute), kept in state.pt so that --resume finds it again from anywhere.
        root = data_root if data_root is not None else getattr(omniglot, "root", None)
        self.data_root = os.path.abspath(os.path.expanduser(str(root))) if root else ""

    # -- resumable state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"iteration": self.iteration, "elapsed": self.elapsed, "step_seconds": self.step_seconds,
                "best": self.best, "rng": rng_state(), "data_root": self.data_root}

    def save_state(self) -> None:
        if self.out_dir is not None:
            save_checkpoint(self.out_dir / "state.pt", self.config, self.solver.state_dict(),
                            self.benchmark.num_train_classes, trainer=self.state())
            self.saved_iteration = self.iteration

    @classmethod
    def resume(cls, out_dir: Path, omniglot, checkpoint_every: int = 100, ranks: Optional[Ranks] = None) -> "Trainer":
        """Continue the run in ``out_dir`` from its last saved state, with its own config (on any number of ranks).

        Rank 0 takes the folder's lock first (:class:`RunFolderLock`), so a
        second process working there is refused before anything is built.
        """
        out_dir = Path(out_dir)
        config, payload = load_saved_state(out_dir)
        lock = RunFolderLock(out_dir).acquire() if ranks is None or ranks.is_main else None
        try:
            trainer = cls(config, omniglot, out_dir=None, checkpoint_every=checkpoint_every, ranks=ranks)
            trainer.out_dir, trainer.lock = (out_dir, lock) if trainer.ranks.is_main else (None, None)
            trainer._restore(out_dir / "state.pt", payload)
            if trainer.out_dir is not None:
                trainer._check_run_folder()
        except BaseException:
            if lock is not None:
                lock.release()
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

    def _check_run_folder(self) -> None:
        """Rank 0 of a resumed run: cut metrics.jsonl back to the state, and say what does not match it."""
        metrics = self.out_dir / "metrics.jsonl"
        lines = metric_lines_up_to(metrics, self.iteration)
        text = "".join(line + "\n" for line in lines)
        if not metrics.is_file() or metrics.read_text(errors="replace") != text:
            unreadable = unreadable_metric_lines(metrics.read_text(errors="replace")) if metrics.is_file() else []
            if unreadable:  # kept before metrics.jsonl is cut back, never dropped
                append_text(self.out_dir / UNREADABLE_METRICS, "".join(line + "\n" for line in unreadable))
                self.warnings.append(f"{len(unreadable)} line(s) of {metrics} could not be read (torn or edited); "
                                     f"they are kept in {self.out_dir / UNREADABLE_METRICS}")
            write_text(metrics, text)
        missing = missing_iterations(lines, self.iteration)
        if missing:
            self.warnings.append(
                f"{metrics} lacks {len(missing)} of the {self.iteration} iterations trained so far "
                f"({describe_numbers(missing)}; lost or torn lines); they cannot be rebuilt without training "
                f"again, so its curves have a gap there. For complete metrics, start the run again with "
                f"`omnimeta run --out {self.out_dir} --force`")
        record = self.out_dir / "config.json"
        saved = json.loads(json.dumps(self.config.to_dict()))
        if not record.is_file():
            write_json(record, saved)
            self.warnings.append(f"{record} was missing; written again from the config in state.pt")
            return
        try:
            written = json.loads(record.read_text())
        except (OSError, ValueError):
            written = None
        if written != saved:
            if isinstance(written, dict):
                keys = sorted(k for k in {*written, *saved} if written.get(k) != saved.get(k))
                what = "; ".join(f"{k}: {json.dumps(written.get(k))} in config.json, {json.dumps(saved.get(k))} in "
                                 f"state.pt" for k in keys[:3]) + ("; ..." if len(keys) > 3 else "")
            else:
                what = "it is not a readable config"
            self.warnings.append(
                f"{record} differs from the state this run resumes ({what}); --resume continues with the settings "
                f"saved in state.pt: config.json is a record of the run, not an input. To train with other "
                f"settings, start a new run with --out")

    # -- the loop --------------------------------------------------------------------------------------
    def _start_out_dir(self) -> None:
        prepare_out_dir(self.out_dir, self.force)
        self.lock = RunFolderLock(self.out_dir).acquire()
        # Another run may have started (and ended) here since the first check.
        check_out_dir(self.out_dir, self.force, check_lock=False)
        for stale in ("checkpoint.pt", "result.json", "state.pt", "restarts.jsonl", UNREADABLE_METRICS,
                      *(path.name for path in self.out_dir.glob(EVENT_FILE_PREFIX + "*"))):
            (self.out_dir / stale).unlink(missing_ok=True)
        write_json(self.out_dir / "config.json", self.config.to_dict())
        write_text(self.out_dir / "metrics.jsonl", "")

    def _save_best(self, iteration: int, val_accuracy: float) -> None:
        save_checkpoint(self.out_dir / "checkpoint.pt", self.config, self.best["state"],
                        self.benchmark.num_train_classes, iteration=iteration, val_accuracy=val_accuracy,
                        leak_record=self.leak_record)

    def run(self, callbacks: Optional[RunCallbacks] = None) -> dict:
        """Train to ``config.iterations``, then test the best validated state; returns ``result.json``'s dict."""
        # Every run with a folder also writes TensorBoard events there (when TensorBoard is installed).
        callbacks = CallbackList([callbacks or RunCallbacks(), tensorboard_log(self.out_dir, self.config)])
        try:
            for message in self.warnings:  # callbacks of a duck type may lack on_warning
                getattr(callbacks, "on_warning", RunCallbacks().on_warning)(message)
            callbacks.on_start(self)
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
                    stats = checked_step_stats(self.solver, self.ranks.meta_train_step(self.solver, tasks,
                                                                                        config.meta_batch))
                    self.step_seconds += time.perf_counter() - step_start
                    if not math.isfinite(stats.loss):
                        kept = f" The last good state is kept in {out_dir}." if out_dir is not None else ""
                        raise NumericalError(
                            f"solver {config.solver}: the training loss became {stats.loss} at iteration {iteration}; "
                            f"the learning rates are "
                            f"likely too high (--meta-lr {config.meta_lr}, or the solver's own, see `omnimeta "
                            f"solvers`): lower them and rerun.{kept}")
                    record = {"iteration": iteration, "loss": stats.loss, "train_accuracy": stats.accuracy}
                    self._call(callbacks.on_step, iteration, stats, time.perf_counter() - start)
                    if iteration % config.val_every == 0 or iteration == config.iterations:
                        score = Score.of(self.ranks.per_task_accuracy(self.solver, self.benchmark.val_tasks))
                        record.update(val_accuracy=score.accuracy, val_ci95=score.ci95)
                        self._call(callbacks.on_validation, iteration, score)
                        if score.accuracy > self.best["val_accuracy"]:
                            self.best = {"val_accuracy": score.accuracy, "iteration": iteration,
                                         "state": copy.deepcopy(self.solver.state_dict())}
                            if out_dir is not None:
                                self._save_best(iteration, score.accuracy)
                    self.iteration = iteration
                    self.elapsed = time.perf_counter() - start
                    record["seconds"] = round(self.elapsed, 3)
                    if out_dir is not None:
                        append_text(out_dir / "metrics.jsonl", json.dumps(record) + "\n")
                        if iteration % self.checkpoint_every == 0:
                            self.save_state()
                    if self._callback_stop and self.ranks.distributed:
                        self.ranks._stop_requested = True  # rank 0's callbacks alone: the ranks agree next time
                    # A stop request (on some rank): all stop here, after the same iteration, with a whole state.
                    if self.ranks.stop_agreed or (self._callback_stop and not self.ranks.distributed):
                        raise _StopAfterIteration
        except KeyboardInterrupt as stop:
            if out_dir is None:
                raise
            name = signal.Signals(self.ranks.stop_signal).name
            if isinstance(stop, _StopAfterIteration):
                self.save_state()
                raise Interrupted(f"interrupted by {name} at iteration {self.iteration}; the state is saved. "
                                  f"Continue with: omnimeta run --resume {out_dir}", self.ranks.stop_signal) from None
            # A second signal stopped the run in the middle of an iteration: what the solver holds now belongs to
            # no iteration, so the last saved state stays (saving this one would make the resumed run differ).
            raise Interrupted(f"stopped at once by a second {name} in iteration {self.iteration + 1}; the state "
                              f"saved at iteration {self.saved_iteration} is kept. Continue with: omnimeta run "
                              f"--resume {out_dir}", self.ranks.stop_signal) from None
        except WriteError as error:
            if out_dir is None or self.saved_iteration is None:
                raise
            raise WriteError(f"{error}; then continue from iteration {self.saved_iteration} with: omnimeta run "
                             f"--resume {out_dir}") from None
        self.save_state()

    def _call(self, callback: Callable, *args) -> None:
        """A callback that raises KeyboardInterrupt asks the run to stop after this iteration (and save)."""
        try:
            callback(*args)
        except KeyboardInterrupt:
            self._callback_stop = True

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
            raise Interrupted(f"interrupted by {signal.Signals(self.ranks.stop_signal).name} during the final test; "
                              f"training is complete and saved. Finish with: omnimeta run --resume {self.out_dir}",
                              self.ranks.stop_signal) from None
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
    #: torch threads of this process (of each local rank with ``nproc`` > 1); None: the thread policy's default.
    threads: Optional[int] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if (self.config is None) == (not self.resume):
            raise ConfigError("a run needs a config to start, or resume=True to continue one")


def _run_this_process(request: RunRequest, callbacks: Optional[RunCallbacks], load_data: Callable) -> Optional[dict]:
    """One process of a run: join the ranks (if any), build or resume the trainer, train, test.

    A restart by the elastic agent (``TORCHELASTIC_RESTART_COUNT`` > 0, after
    a rank died) continues from the run folder's last saved state, on every
    rank, and rank 0 logs it in ``RUN_DIR/restarts.jsonl``.
    """
    config = request.config if request.config is not None else load_saved_state(request.out_dir)[0]
    ranks = Ranks.join(config.device, request.backend, request.dist_timeout)
    try:
        # Rank 0 loads (or decodes) the data first, so that the others find it cached.
        omniglot = ranks.agree(lambda: load_data() if ranks.is_main else None)
        # Each node's agent counts its own restarts: under torchrun on several nodes, an agent that restarts its
        # ranks because another node's rank died (for it, a change of members) starts them with its count
        # unchanged. So a group is a restart if any of its ranks says so.
        restart = ranks.largest(int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
        # The dead group's ranks are all gone by now, so every rank sees the same state.pt. A group that died
        # before rank 0 saved this run's first state has nothing to continue (state.pt is missing, or an older
        # run's that --force is replacing): it starts again.
        resume = request.resume or (restart > 0 and (request.out_dir / "state.pt").is_file()
                                    and load_saved_state(request.out_dir)[0].to_dict() == config.to_dict())

        def build() -> Trainer:
            data = omniglot if omniglot is not None else load_data()
            if resume:
                return Trainer.resume(request.out_dir, data, request.checkpoint_every, ranks)
            return Trainer(config, data, request.out_dir, request.force or restart > 0, request.checkpoint_every,
                           ranks, data_root=request.data_root)

        trainer = ranks.agree(build)
        if restart > 0 and trainer.out_dir is not None:
            _log_restart(trainer, restart, ranks.world_size, resume)
        result = trainer.run(callbacks if ranks.is_main else None)
        return result if ranks.is_main else None  # rank 0 reports the run (and, under torchrun, prints it)
    finally:
        ranks.close()


def _log_restart(trainer: Trainer, restart: int, world_size: int, resumed: bool) -> None:
    """Rank 0 of a restarted group: one line on stderr, and one in ``restarts.jsonl`` when it resumed."""
    limit = os.environ.get("TORCHELASTIC_MAX_RESTARTS", "?")
    if not resumed:  # the new run's folder is set up (and restarts.jsonl cleared) when it starts
        print(f"a rank failed before the first state was saved; restart {restart} of {limit}: the {world_size} "
              f"ranks start the run again", file=sys.stderr, flush=True)
        return
    print(f"a rank failed; restart {restart} of {limit}: the {world_size} ranks continue from iteration "
          f"{trainer.iteration} (saved in {trainer.out_dir / 'state.pt'})", file=sys.stderr, flush=True)
    with open(trainer.out_dir / "restarts.jsonl", "a") as log:
        log.write(json.dumps({"restart": restart, "resumed_from_iteration": trainer.iteration,
                              "time": time.time()}) + "\n")


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
    except PeerLostError as error:
        # Not this rank's failure: the launcher names the rank that died (see wait_to_be_stopped).
        wait_to_be_stopped(error)
        raise SystemExit(error.exit_code) from None
    except OmnimetaError as error:
        if getattr(error, "reported_by_every_rank", False) or int(os.environ.get("RANK", "0")) == 0:
            print(str(error) if isinstance(error, Interrupted) else f"Error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception:
        traceback.print_exc()  # a bug: the launcher names the rank and the error, this shows where
        raise


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
        return launch_local_ranks(_rank_main, (request, callbacks), request.nproc, request.max_restarts, hint,
                                  threads=request.threads)
    # A rank of --nproc finds its count in the environment the launcher gave it; a count set earlier stays.
    if request.threads is not None:
        configure_threads(request.threads)
    else:
        task_threads()
    return _run_this_process(request, callbacks, _data_loader(request, callbacks))
