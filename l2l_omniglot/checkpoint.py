"""Checkpoints: atomic to write, safe to read, and self-describing.

A checkpoint is a ``torch.save`` of tensors and plain data only (the config is
stored as JSON text), so it loads with ``torch.load(weights_only=True)`` and
no pickled code ever runs. It is written through :func:`atomic_path`, so a
crash leaves the previous checkpoint whole.

It carries everything needed to rebuild its solver without the data set: the
run config (with the solver's name and its resolved options), the number of
meta-train classes, and the package and ``module:Class`` the solver came
from. So :func:`load_solver` treats every solver alike, built-in or plugin,
and a run whose solver is not installed is named with its package.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch

from l2l_omniglot.atomic import atomic_path
from l2l_omniglot.config import RunConfig, resolve_device
from l2l_omniglot.errors import ConfigError, WriteError, first_line
from l2l_omniglot.solvers.registry import SOLVERS

FORMAT = "omnimeta-checkpoint-v2"
OLDER_FORMATS = ("omnimeta-checkpoint-v1",)


def save_checkpoint(path: Path, config: RunConfig, solver_state: dict, num_train_classes: int, **extra) -> None:
    path = Path(path)
    entry = SOLVERS.entry(config.solver)
    payload = {"format": FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True), "solver": solver_state,
               "num_train_classes": int(num_train_classes), "solver_package": entry.package,
               "solver_target": entry.target, **extra}
    try:
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)
    except RuntimeError as error:  # torch.save reports a failed write (a full disk) as a RuntimeError
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        raise WriteError(f"could not write {path} ({first_line(error)}); {kept}; free space on its disk or "
                         f"fix the cause and run again") from None


def load_checkpoint(path: Path, map_location="cpu", expect: tuple = ()) -> tuple:
    """``(config, payload)`` from a checkpoint, or ConfigError naming the file and the fix.

    ``expect`` names payload entries that must be there (``"trainer"`` for a
    resumable ``state.pt``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; train one first with `omnimeta run --out {path.parent}`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError) as error:
        # Never suggest weights_only=False: a file that needs it may run code when loaded.
        raise ConfigError(f"{path} is not a readable omnimeta checkpoint ({first_line(error, 160)}); it is damaged or "
                          f"not from omnimeta: retrain, or restore the file from a backup")
    if not isinstance(payload, dict):
        raise ConfigError(f"{path} is not an omnimeta checkpoint (format {FORMAT} expected)")
    if payload.get("format") in OLDER_FORMATS:
        raise ConfigError(f"{path} was written by an older omnimeta ({payload['format']}); this version reads "
                          f"{FORMAT}: retrain the run with this version")
    if payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an omnimeta checkpoint (format {FORMAT} expected)")
    problems = [name for name, kind in (("config", str), ("solver", dict), ("num_train_classes", int))
                if not isinstance(payload.get(name), kind)]
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
    return config, payload


def missing_solver_hint(path: Path, config: RunConfig, payload: dict) -> str:
    package = payload.get("solver_package") or "an unknown package"
    return (f"{path} needs the solver {config.solver!r}, which is not installed here; it comes from the package "
            f"{package}: install it (`pip install {package}`) and retry")


def load_solver(path: Path, device="cpu") -> tuple:
    """``(config, solver, payload)`` from a checkpoint: the solver rebuilt from what the file says, weights loaded."""
    path = Path(path)
    config, payload = load_checkpoint(path)
    if config.solver not in SOLVERS:
        raise ConfigError(missing_solver_hint(path, config, payload))
    solver = SOLVERS[config.solver](config, payload["num_train_classes"], resolve_device(device))
    try:
        solver.load_state_dict(payload["solver"])
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"{path} does not fit a {config.ways}-way {config.solver} model "
                          f"({str(error).splitlines()[0][:120]}); it comes from another solver or was altered")
    return config, solver, payload
