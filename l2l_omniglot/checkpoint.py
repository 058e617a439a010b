"""Checkpoints: atomic to write, safe to read.

A checkpoint is a ``torch.save`` of tensors and plain data only (the config is
stored as JSON text), so it loads with ``torch.load(weights_only=True)`` and
no pickled code ever runs. It is written through :func:`atomic_path`, so a
crash leaves the previous checkpoint whole.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch

from l2l_omniglot.atomic import atomic_path
from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError

FORMAT = "omnimeta-checkpoint-v1"


def save_checkpoint(path: Path, config: RunConfig, solver_state: dict, **extra) -> None:
    payload = {"format": FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True),
               "solver": solver_state, **extra}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: Path, map_location="cpu") -> tuple:
    """``(config, payload)`` from a checkpoint, or ConfigError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; train one first with `omnimeta run --out {path.parent}`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path} is not a readable omnimeta checkpoint ({reason[:200]}); retrain or restore it")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an omnimeta checkpoint (format {FORMAT} expected)")
    return RunConfig.from_dict(json.loads(payload["config"])), payload
