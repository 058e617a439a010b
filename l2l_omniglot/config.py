"""A run's settings: one dataclass, with each solver's own defaults layered on top.

Precedence, lowest first: the fields' defaults here, the solver's ``defaults``
(e.g. how long it trains), then what the user passed. The resolved config is
saved as ``config.json`` in the run folder.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE
from l2l_omniglot.data.splits import SPLITS
from l2l_omniglot.data.tasks import AUGMENTS, check_task_shape
from l2l_omniglot.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class RunConfig:
    solver: str = "fomaml"
    ways: int = 5
    shots: int = 1
    queries: int = 1
    meta_batch: int = 32
    iterations: int = 1000
    inner_lr: float = 0.4
    meta_lr: float = 1e-3
    train_inner_steps: int = 1
    test_inner_steps: int = 3
    split: str = "lake"
    augment: str = "none"
    eval_tasks: int = 600
    val_tasks: int = 100
    val_every: int = 100
    seed: int = 0
    device: str = "auto"
    image_size: int = DEFAULT_IMAGE_SIZE
    transfer_mode: str = "classes"
    zero_head: bool = False
    lr_schedule: str = "cosine"
    engine: str = "l2l"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; the file was written by another version")
        return cls(**data)

    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first option that is out of range."""
        check_task_shape(self.ways, self.shots, self.queries)
        for name in ("inner_lr", "meta_lr"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0 (got {value})")
        for name in ("meta_batch", "iterations", "eval_tasks", "val_tasks", "val_every", "image_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        for name in ("train_inner_steps", "test_inner_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 0 (got {getattr(self, name)})")
        if self.image_size < 16:
            raise ConfigError(f"--image-size must be at least 16 for the 4-block network (got {self.image_size})")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"unknown augment {self.augment!r}; use one of {', '.join(AUGMENTS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr schedule {self.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
        from l2l_omniglot.engines import ENGINES
        from l2l_omniglot.solvers import SOLVERS

        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; use one of {', '.join(ENGINES)}")
        # Solvers without an inner loop (transfer) only have the default engine's name.
        engines = getattr(SOLVERS.get(self.solver), "engines", (RunConfig.engine,))
        if self.engine not in engines:
            raise ConfigError(f"--engine {self.engine} does not apply to {self.solver}; drop --engine")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}")
        return self


def resolve_config(solver: str, **overrides) -> RunConfig:
    """The config for ``solver``: field defaults, then the solver's (and its mode's), then non-None ``overrides``."""
    from l2l_omniglot.solvers import solver_class

    chosen = solver_class(solver)
    values = dict(chosen.defaults)
    mode = overrides.get("transfer_mode") or RunConfig.transfer_mode
    values.update(getattr(chosen, "mode_defaults", {}).get(mode, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["solver"] = solver
    return RunConfig(**values).validate()
