"""A run's folder: checked before any work, held by one process, written as the run goes, repaired on resume.

A run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``
(the best validated state), ``state.pt`` (the resumable loop state, see
:mod:`l2l_omniglot.run_state`), ``result.json`` and, after restarts,
``restarts.jsonl``. Three guards keep what the user had:

* :func:`check_out_dir` refuses a path that is a file, is not writable, is in
  use, or already holds a run (unless ``force``), before any data is loaded;
* :class:`RunFolderLock` lets one process at a time work in a folder;
* :func:`metric_lines_up_to` cuts ``metrics.jsonl`` back to the saved state
  when a run resumes (a kill can leave a torn line, or lines past the state).

:class:`RunFolder` is the folder as the training loop sees it, one object
for all of this. A run without a folder (a script's quick run, ranks other
than 0) gets :class:`NoRunFolder`, which keeps nothing, so the loop is
written once, without "is there a folder?" branches.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
from pathlib import Path
from typing import Optional

from l2l_omniglot.atomic import append_text, write_json, write_text
from l2l_omniglot.checkpoint import save_checkpoint
from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError, OmnimetaError, as_json_value, describe_differences
from l2l_omniglot.tensorboard_log import EVENT_FILE_PREFIX

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json", "state.pt")
#: Where --resume keeps the lines of metrics.jsonl it cannot read, rather than drop them.
UNREADABLE_METRICS = "metrics-unreadable.txt"
#: What a new run removes from a folder it replaces (``--force``); config.json and metrics.jsonl are rewritten.
STALE_FILES = ("checkpoint.pt", "result.json", "state.pt", "restarts.jsonl", UNREADABLE_METRICS)
LOCK_FILE = ".omnimeta.lock"


class Interrupted(OmnimetaError):
    """The run was stopped by a signal (Ctrl-C, SIGTERM); its state was saved. Exit status 128 + the signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


# -- checks before any work ----------------------------------------------------------------------------
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


# -- one writer per folder -----------------------------------------------------------------------------
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


# -- metrics repair ------------------------------------------------------------------------------------
def metric_lines_up_to(path: Path, iteration: int) -> list:
    """The lines of ``metrics.jsonl`` for iterations 1 .. ``iteration``, each once, in order.

    A line torn by a kill (not JSON, or without an integer ``iteration``) is
    left out (``--resume`` keeps it in :data:`UNREADABLE_METRICS`), and so is a
    repeated iteration (two writers, once possible) after its first line.
    :func:`missing_iterations` tells what is then lacking.
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


# -- the folder as the training loop sees it -----------------------------------------------------------
class RunFolder:
    """The folder of one run: start it, lock it, write the run's files into it, repair it on resume.

    :meth:`of` gives :class:`NoRunFolder` for no path: the same methods,
    keeping nothing, so the training loop never asks whether it has a folder.
    """

    def __init__(self, path: Path, force: bool = False):
        self.path = Path(path)
        self.force = force
        self.lock: Optional[RunFolderLock] = None

    @staticmethod
    def of(path: Optional[Path], force: bool = False) -> "RunFolder":
        """The folder at ``path``, or :class:`NoRunFolder` for ``None``."""
        return RunFolder(path, force) if path is not None else NoRunFolder()

    # -- before and after the run ------------------------------------------------------------------
    def check(self) -> None:
        """Refuse now (before any work) a path that cannot take a new run (see :func:`check_out_dir`)."""
        check_out_dir(self.path, self.force)

    def start(self, config: RunConfig) -> None:
        """Create, lock and empty the folder for a new run, and record its config."""
        prepare_out_dir(self.path, self.force)
        self.lock = RunFolderLock(self.path).acquire()
        # Another run may have started (and ended) here since the first check.
        check_out_dir(self.path, self.force, check_lock=False)
        for stale in (*STALE_FILES, *(path.name for path in self.path.glob(EVENT_FILE_PREFIX + "*"))):
            (self.path / stale).unlink(missing_ok=True)
        write_json(self.path / "config.json", config.to_dict())
        write_text(self.path / "metrics.jsonl", "")

    def take_over(self) -> None:
        """Lock the folder of a run that resumes (a second process working there is refused)."""
        self.lock = RunFolderLock(self.path).acquire()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- written as the run goes -------------------------------------------------------------------
    def save_state(self, config: RunConfig, solver_state: dict, num_train_classes: int, trainer: dict) -> None:
        save_checkpoint(self.path / "state.pt", config, solver_state, num_train_classes, trainer=trainer)

    def save_best(self, config: RunConfig, solver_state: dict, num_train_classes: int, iteration: int,
                  val_accuracy: float, leak_record: Optional[dict] = None) -> None:
        save_checkpoint(self.path / "checkpoint.pt", config, solver_state, num_train_classes, iteration=iteration,
                        val_accuracy=val_accuracy, leak_record=leak_record)

    def append_metrics(self, record: dict) -> None:
        append_text(self.path / "metrics.jsonl", json.dumps(record) + "\n")

    def write_result(self, result: dict) -> None:
        write_json(self.path / "result.json", result)

    def log_restart(self, record: dict) -> None:
        append_text(self.path / "restarts.jsonl", json.dumps(record) + "\n")

    # -- how a stopped run continues ---------------------------------------------------------------
    @property
    def resume_command(self) -> str:
        return f"omnimeta run --resume {self.path}"

    def interrupted(self, stop: KeyboardInterrupt, message: str, signum: int) -> BaseException:
        """What a stopped run raises: :class:`Interrupted` with ``message`` (its state is here)."""
        return Interrupted(message, signum)

    def last_good_state_note(self) -> str:
        return f" The last good state is kept in {self.path}."

    # -- repair on resume --------------------------------------------------------------------------
    def repair(self, config: RunConfig, iteration: int) -> list:
        """Cut metrics.jsonl back to the saved ``iteration``; the warnings on what does not match the state."""
        warnings = []
        metrics = self.path / "metrics.jsonl"
        lines = metric_lines_up_to(metrics, iteration)
        text = "".join(line + "\n" for line in lines)
        if not metrics.is_file() or metrics.read_text(errors="replace") != text:
            unreadable = unreadable_metric_lines(metrics.read_text(errors="replace")) if metrics.is_file() else []
            if unreadable:  # kept before metrics.jsonl is cut back, never dropped
                append_text(self.path / UNREADABLE_METRICS, "".join(line + "\n" for line in unreadable))
                warnings.append(f"{len(unreadable)} line(s) of {metrics} could not be read (torn or edited); "
                                f"they are kept in {self.path / UNREADABLE_METRICS}")
            write_text(metrics, text)
        missing = missing_iterations(lines, iteration)
        if missing:
            warnings.append(
                f"{metrics} lacks {len(missing)} of the {iteration} iterations trained so far "
                f"({describe_numbers(missing)}; lost or torn lines); they cannot be rebuilt without training "
                f"again, so its curves have a gap there. For complete metrics, start the run again with "
                f"`omnimeta run --out {self.path} --force`")
        config_warning = self._check_config_record(config)
        return warnings + ([config_warning] if config_warning else [])

    def _check_config_record(self, config: RunConfig) -> Optional[str]:
        """Rewrite a missing config.json; a warning when it is missing or differs from the saved state's config."""
        record = self.path / "config.json"
        saved = as_json_value(config.to_dict())
        if not record.is_file():
            write_json(record, saved)
            return f"{record} was missing; written again from the config in state.pt"
        try:
            written = json.loads(record.read_text())
        except (OSError, ValueError):
            written = None
        if written == saved:
            return None
        what = describe_differences(written, saved, "in config.json", "in state.pt")
        return (f"{record} differs from the state this run resumes ({what}); --resume continues with the settings "
                f"saved in state.pt: config.json is a record of the run, not an input. To train with other "
                f"settings, start a new run with --out")


class NoRunFolder(RunFolder):
    """A run without a folder (a script's run, a rank other than 0): every write is skipped, nothing is kept.

    Stopped, such a run has nothing to continue from, so its interrupt goes on
    as it came (a ``KeyboardInterrupt``), not as :class:`Interrupted`.
    """

    def __init__(self):
        self.path = None
        self.force = False
        self.lock = None

    def check(self) -> None:
        pass

    def start(self, config: RunConfig) -> None:
        pass

    def take_over(self) -> None:
        pass

    def save_state(self, config, solver_state, num_train_classes, trainer) -> None:
        pass

    def save_best(self, config, solver_state, num_train_classes, iteration, val_accuracy, leak_record=None) -> None:
        pass

    def append_metrics(self, record: dict) -> None:
        pass

    def write_result(self, result: dict) -> None:
        pass

    def log_restart(self, record: dict) -> None:
        pass

    @property
    def resume_command(self) -> str:
        return "(nothing to resume: this run has no folder)"

    def interrupted(self, stop: KeyboardInterrupt, message: str, signum: int) -> BaseException:
        return stop

    def last_good_state_note(self) -> str:
        return ""

    def repair(self, config: RunConfig, iteration: int) -> list:
        return []
