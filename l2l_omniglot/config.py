"""A run's shared settings: one dataclass that every solver reads the same way.

The shared settings are the task shape, the split, the budget, the seed, the
device and the evaluation. What belongs to one method (an inner learning
rate, an engine, a mode) is that solver's own: it declares those options in
its own file (:mod:`l2l_omniglot.solvers.options`), and they travel here as
the plain dict ``options``, already resolved and checked by the solver.

Precedence, lowest first: the fields' defaults here, the solver's
``defaults`` (e.g. how long it trains), then what the user passed
(:func:`l2l_omniglot.solvers.resolve_config`). The resolved config is saved
as ``config.json`` in the run folder, and inside every checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE
from l2l_omniglot.data.splits import SPLITS
from l2l_omniglot.data.tasks import augmentations, check_task_shape
from l2l_omniglot.errors import ConfigError, with_article
from l2l_omniglot.precision import check_precision

DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("cosine", "constant")
#: Upper bounds that keep a typo from stalling a run for minutes before it says anything.
MAX_EVALUATION_TASKS = 20_000
MAX_SEED = 2**63 - 1
#: Tasks per meta-iteration: far above any paper's (4 to 32), and still a few GiB of task tensors at 20-way 5-shot.
MAX_META_BATCH = 4096
#: Meta-iterations (and --val-every): a billion is years of training, so more is a typo.
MAX_ITERATIONS = 10**9


@dataclass
class RunConfig:
    solver: str = "fomaml"
    ways: int = 5
    shots: int = 1
    queries: int = 1
    meta_batch: int = 32
    iterations: int = 1000
    meta_lr: float = 1e-3
    lr_schedule: str = "cosine"
    split: str = "lake"
    augment: str = "none"
    eval_tasks: int = 600
    val_tasks: int = 100
    val_every: int = 100
    seed: int = 0
    device: str = "auto"
    #: float32, or bfloat16 arithmetic on float32 weights (:mod:`l2l_omniglot.precision`).
    precision: str = "float32"
    image_size: int = DEFAULT_IMAGE_SIZE
    #: The solver's own options, resolved (every option it declares, with its value).
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def shared_names(cls) -> tuple:
        """The names of the shared settings (everything but ``solver`` and ``options``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("solver", "options"))

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a JSON object (got {type(data).__name__})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; the file was written by another version "
                              f"of omnimeta")
        if not isinstance(data.get("options", {}), dict):
            raise ConfigError("the config's options must be a JSON object")
        return cls(**data)

    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first shared setting that is out of range."""
        for f in dataclasses.fields(self):
            expected = {"int": int, "float": (int, float), "str": str, "dict": dict}[f.type]
            value = getattr(self, f.name)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"--{f.name.replace('_', '-')} must be {with_article(f.type)} (got {value!r})")
        check_task_shape(self.ways, self.shots, self.queries)
        if not math.isfinite(self.meta_lr) or self.meta_lr < 0:
            raise ConfigError(f"--meta-lr must be a finite number >= 0 (got {self.meta_lr})")
        for name in ("meta_batch", "iterations", "eval_tasks", "val_tasks", "val_every", "image_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        for name, most in (("meta_batch", MAX_META_BATCH), ("iterations", MAX_ITERATIONS),
                           ("val_every", MAX_ITERATIONS)):
            if getattr(self, name) > most:
                raise ConfigError(f"--{name.replace('_', '-')} must be at most {most} (got {getattr(self, name)})")
        for name in ("eval_tasks", "val_tasks"):
            if getattr(self, name) > MAX_EVALUATION_TASKS:
                raise ConfigError(f"--{name.replace('_', '-')} must be at most {MAX_EVALUATION_TASKS} "
                                  f"(got {getattr(self, name)}); a 95% interval is already below 0.005 there")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be between 0 and 2**63 - 1 (got {self.seed})")
        if self.image_size < 16:
            raise ConfigError(f"--image-size must be at least 16 for the 4-block network (got {self.image_size})")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        augmentations(self.augment)  # refuses an unknown value
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr schedule {self.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
        check_precision(self.precision)
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}")
        return self


def resolve_device(name: str) -> torch.device:
    """The torch device a config's ``device`` names (``auto``: a GPU when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but this machine has no usable CUDA GPU; use --device cpu")
    return torch.device(name)
