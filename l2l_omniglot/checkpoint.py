"""Checkpoints: atomic to write, safe to read, and self-describing.

A checkpoint is a ``torch.save`` of tensors and plain data only (the config is
stored as JSON text), so it loads with ``torch.load(weights_only=True)`` and
no pickled code ever runs. It is written through :func:`atomic_path`, so a
crash leaves the previous checkpoint whole.

It carries everything needed to rebuild its solver without the data set: the
run config (with the solver's name and its resolved options), the number of
meta-train classes, and the package, version, entry point and class the
solver came from (:mod:`l2l_omniglot.solver_record`). So :func:`load_solver`
treats every solver alike, built-in or plugin, a run whose solver is not
installed is named with its package, and a file whose class is not the one
that would now run it is refused. A state that could not be read back (an
object in ``state_dict``) is refused before it is written, and non-finite
weights when they are read (:mod:`l2l_omniglot.solver_checks`).
"""
from __future__ import annotations

import dataclasses
import json
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch

from l2l_omniglot.atomic import atomic_path
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.errors import ConfigError, WriteError, first_line
from l2l_omniglot.solver_checks import check_plain_state, non_finite_entry
from l2l_omniglot.solver_record import check_solver_record, solver_record
from l2l_omniglot.solvers.registry import make_solver

FORMAT = "omnimeta-checkpoint-v2"
#: More meta-train classes than any split of Omniglot has, even with every rotation (1623 characters x 4).
MAX_TRAIN_CLASSES = 100_000
OLDER_FORMATS = ("omnimeta-checkpoint-v1",)


def save_checkpoint(path: Path, config: RunConfig, solver_state: dict, num_train_classes: int, **extra) -> None:
    """Write a checkpoint of ``solver_state``; a state that could not be read back is refused before any write.

    ``extra`` adds entries (``trainer`` for a resumable state, ``leak_record`` of :mod:`l2l_omniglot.leaks`).
    """
    path = Path(path)
    check_plain_state(config.solver, solver_state)
    best = extra.get("trainer", {}).get("best", {}).get("state") if isinstance(extra.get("trainer"), dict) else None
    if best is not None:
        check_plain_state(config.solver, best)
    payload = {"format": FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True), "solver": solver_state,
               "num_train_classes": int(num_train_classes), **solver_record(config.solver), **extra}
    try:
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)
    except RuntimeError:  # torch.save reports a failed write (a full disk) as a RuntimeError, in its own jargon
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        raise WriteError(f"could not write {path} (the disk is full, or the write failed); {kept}; free space on "
                         f"its disk or fix the cause and run again") from None


def load_failure(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in words that never suggest loading the file another way.

    PyTorch's own message for a file with pickled objects says how to load it
    anyway (``weights_only=False``), which would run whatever code it holds;
    omnimeta never writes such objects, so the file is refused, and only the
    object's name is kept from that message.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            return (f"it holds a Python object ({found.group(1)}) beyond tensors and plain data, which omnimeta "
                    f"never writes")
        found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        return f"its pickled data cannot be read: {found.group(1)[:120] if found else 'unsupported content'}"
    text = text.strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def load_checkpoint(path: Path, map_location="cpu", expect: tuple = ()) -> tuple:
    """``(config, payload)`` from a checkpoint, or ConfigError naming the file and the fix.

    ``expect`` names payload entries that must be there (``"trainer"`` for a
    resumable ``state.pt``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; train one first with `omnimeta run --out {path.parent}`")
    try:
        with warnings.catch_warnings():  # PyTorch warns about what it meets in a foreign file: the error says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError, IndexError, KeyError, MemoryError, struct.error) as error:
        raise ConfigError(f"{path} is not a readable omnimeta checkpoint ({load_failure(error)}); it is damaged or "
                          f"not from omnimeta: retrain, or restore the file from a backup") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path} is not an omnimeta checkpoint (format {FORMAT} expected)")
    if payload.get("format") in OLDER_FORMATS:
        raise ConfigError(f"{path} was written by an older omnimeta ({payload['format']}); this version reads "
                          f"{FORMAT}: retrain the run with this version")
    if payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an omnimeta checkpoint (format {FORMAT} expected)")
    problems = [name for name, kind in (("config", str), ("solver", dict), ("num_train_classes", int))
                if not isinstance(payload.get(name), kind) or isinstance(payload.get(name), bool)]
    if not problems and not 1 <= payload["num_train_classes"] <= MAX_TRAIN_CLASSES:
        problems.append("num_train_classes")
    if not problems and [name for name in expect if not isinstance(payload.get(name), dict)] == ["trainer"]:
        raise ConfigError(f"{path} is a model checkpoint (like checkpoint.pt), not a resumable state: it has no "
                          f"trainer part, so a run cannot continue from it; restore state.pt from a backup, or "
                          f"start the run again with `omnimeta run --out {path.parent} --force`")
    problems += [name for name in expect if not isinstance(payload.get(name), dict)]
    if problems:
        what = "a resumable state (state.pt)" if expect else "a checkpoint"
        raise ConfigError(f"{path} is not {what}: {', '.join(problems)} missing or of the wrong type; "
                          f"retrain, or restore the file from a backup")
    try:
        data = json.loads(payload["config"])
    except ValueError:
        raise ConfigError(f"{path} holds a config that is not JSON; retrain, or restore the file") from None
    try:
        config = RunConfig.from_dict(data).validate()
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"{path} holds an unusable config ({error}); retrain, or restore the file") from None
    check_solver_record(path, config, payload)
    for part, state in (("weights", payload["solver"]), ("best weights", _best_state(payload))):
        where = non_finite_entry(state) if state is not None else None
        if where is not None:
            raise ConfigError(f"{path} holds non-finite {part} of its {config.solver} model (NaN or infinity in "
                              f"{where[:80]}); no score is given for it: retrain (with lower learning rates), or "
                              f"restore the file from a backup")
    return config, payload


def _best_state(payload: dict):
    """The best validated state inside a resumable ``state.pt`` (None in a model checkpoint)."""
    trainer = payload.get("trainer")
    best = trainer.get("best") if isinstance(trainer, dict) else None
    return best.get("state") if isinstance(best, dict) and isinstance(best.get("state"), dict) else None


def load_solver(path: Path, device="cpu", precision: Optional[str] = None) -> tuple:
    """``(config, solver, payload)`` from a checkpoint: the solver rebuilt from what the file says, weights loaded;
    its network laid out for ``precision`` (default: the run's; :mod:`l2l_omniglot.precision`)."""
    path = Path(path)
    config, payload = load_checkpoint(path)  # the solver's class checked there (check_solver_record)
    target = resolve_device(device)
    built = dataclasses.replace(config, precision=precision) if precision else config
    try:
        solver = make_solver(built, payload["num_train_classes"], target)
    except (RuntimeError, ValueError, TypeError, KeyError, OverflowError, MemoryError) as error:
        raise ConfigError(f"{path} holds settings a {config.solver} model cannot be built from "
                          f"({type(error).__name__}: {first_line(error, 120)}); it was altered or is damaged: "
                          f"retrain, or restore the file from a backup") from None
    try:
        solver.load_state_dict(payload["solver"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ConfigError(f"{path} does not fit a {config.ways}-way {config.solver} model "
                          f"({str(error).splitlines()[0][:120]}); it comes from another solver or was altered")
    return config, solver, payload
