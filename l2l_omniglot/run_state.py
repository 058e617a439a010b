"""The saved state of a run: what ``state.pt`` holds, and the random generators it must bring back.

A resumed run ends with the numbers of a run that was never stopped only if
everything that decides the next iteration comes back: the solver (weights,
optimizer), the loop's counters and best state, and every random generator
(Python's, NumPy's, torch's). :func:`rng_state` captures the generators as
tensors and plain data, so ``state.pt`` loads with ``weights_only=True``;
:func:`check_trainer_state` refuses a file whose trainer part is damaged before
anything is built from it, and :func:`load_saved_state` is the one reader
every part of a resume uses (the command line, the data loader, each rank).
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from l2l_omniglot.checkpoint import load_checkpoint
from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError

#: What the trainer part of ``state.pt`` holds, and the types each must have.
TRAINER_STATE = {"iteration": int, "elapsed": (int, float), "step_seconds": (int, float), "best": dict, "rng": dict}
BEST_STATE = {"val_accuracy": (int, float), "iteration": int, "state": (dict, type(None))}
RNG_STATE = ("python", "python_version", "python_gauss", "numpy", "numpy_position", "numpy_gauss", "torch")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators: the same seed, the same run (on the CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every generator's state, as tensors and plain data (checkpoint-safe)."""
    version, internal, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": torch.tensor(internal, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
            "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_position": int(position),
            "numpy_gauss": [int(has_gauss), float(cached)], "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_position"],
                         has_gauss, cached))
    torch.set_rng_state(state["torch"])


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
