"""Which characters each phase may see.

Character ids are global (background first, see :class:`~l2l_omniglot.data.omniglot.Omniglot`).

* ``lake`` (default): meta-train on the background alphabets except
  :data:`LAKE_VALIDATION_ALPHABETS`, validate on those, meta-test on the 20
  evaluation alphabets (Lake et al. 2015's background/evaluation protocol).
* ``random``: all 1,623 characters shuffled with a fixed seed into 1100 / 100
  / 423, as in the MAML literature and learn2learn's Omniglot benchmark. It
  mixes alphabets across phases, so it is easier than ``lake``.

No character is in two phases of one split.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from l2l_omniglot.errors import ConfigError

SPLITS = ("lake", "random")
PHASES = ("train", "val", "test")

#: Five background alphabets held out for validation in the ``lake`` split
#: (chosen once, by hand, to span scripts of different size and style).
LAKE_VALIDATION_ALPHABETS = (
    "Bengali",
    "Futurama",
    "Hebrew",
    "Japanese_(katakana)",
    "Tifinagh",
)
RANDOM_SPLIT_SIZES = (1100, 100, 423)
RANDOM_SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    name: str
    train: tuple
    val: tuple
    test: tuple

    def phase(self, name: str) -> tuple:
        if name not in PHASES:
            raise ConfigError(f"unknown phase {name!r}; use one of {', '.join(PHASES)}")
        return getattr(self, name)

    def sizes(self) -> dict:
        return {phase: len(self.phase(phase)) for phase in PHASES}


def make_split(name: str, omniglot) -> Split:
    """The character ids of each phase of split ``name`` over ``omniglot``."""
    characters = omniglot.characters
    if name == "lake":
        held_out = {f"background/{a}" for a in LAKE_VALIDATION_ALPHABETS}
        alphabet_of = omniglot.alphabet_of
        train, val, test = [], [], []
        for character, alphabet in enumerate(alphabet_of):
            if alphabet.startswith("evaluation/"):
                test.append(character)
            elif alphabet in held_out:
                val.append(character)
            else:
                train.append(character)
        missing = held_out - set(alphabet_of)
        if missing:
            raise ConfigError(f"the background set lacks the validation alphabets {sorted(missing)}")
        return Split(name, tuple(train), tuple(val), tuple(test))
    if name == "random":
        order = list(range(len(characters)))
        random.Random(RANDOM_SPLIT_SEED).shuffle(order)
        n_train, n_val, _ = RANDOM_SPLIT_SIZES
        return Split(name, tuple(sorted(order[:n_train])), tuple(sorted(order[n_train:n_train + n_val])),
                     tuple(sorted(order[n_train + n_val:])))
    raise ConfigError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
