"""Which characters each phase may see, and whether their rotations are classes.

Character ids are global (background first, see :class:`~l2l_omniglot.data.omniglot.Omniglot`).

* ``lake`` (default): meta-train on the background alphabets except
  :data:`LAKE_VALIDATION_ALPHABETS`, validate on those, meta-test on the 20
  evaluation alphabets (Lake et al. 2015's background/evaluation protocol).
* ``random``: all 1,623 characters shuffled with a fixed seed into 1100 / 100
  / 423, as in the MAML literature and learn2learn's Omniglot benchmark. It
  mixes alphabets across phases, so it is easier than ``lake``.
* ``vinyals``: the class split of Vinyals et al. (2016, Matching Networks)
  that most published Omniglot numbers use, so results can be compared with
  them: 1,028 / 172 / 423 characters from both archives, each character's four
  quarter-turns being classes of their own in every phase (4,112 / 688 /
  1,692 classes). The lists ship in ``l2l_omniglot/data/vinyals/`` as the
  Prototypical Networks repository (Snell et al. 2017, MIT) publishes them.

No character is in two phases of one split. A phase's classes are its
characters, or with :attr:`Split.rotated_classes` the four rotations of each
(see :class:`~l2l_omniglot.data.tasks.CharacterImages` for their numbering).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import resources

from l2l_omniglot.errors import ConfigError, DataError

SPLITS = ("lake", "random", "vinyals")
PHASES = ("train", "val", "test")
ROTATIONS = 4  # 0, 90, 180 and 270 degrees

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

#: Where the ``vinyals`` lists live inside the package (read with importlib.resources,
#: so the split works wherever omnimeta is installed, without the data root).
VINYALS_PACKAGE = "l2l_omniglot.data"
VINYALS_FOLDER = "vinyals"
#: ``Alphabet/characterNN/rotDDD``: the drawing turned DDD degrees counter-clockwise.
VINYALS_LINE = re.compile(r"^(?P<character>[^/]+/character\d+)/rot(?P<degrees>\d{3})$")
VINYALS_DEGREES = tuple(f"{90 * k:03d}" for k in range(ROTATIONS))  # "000", "090", "180", "270"


@dataclass(frozen=True)
class Split:
    """The global character ids of each phase.

    With ``rotated_classes`` every character stands for :data:`ROTATIONS`
    classes (its quarter-turns) in every phase, as the ``vinyals`` split
    defines them; otherwise each character is one class.
    """

    name: str
    train: tuple
    val: tuple
    test: tuple
    rotated_classes: bool = False

    def phase(self, name: str) -> tuple:
        """The character ids of phase ``name``."""
        if name not in PHASES:
            raise ConfigError(f"unknown phase {name!r}; use one of {', '.join(PHASES)}")
        return getattr(self, name)

    @property
    def classes_per_character(self) -> int:
        return ROTATIONS if self.rotated_classes else 1

    def sizes(self) -> dict:
        """Classes per phase: what a task's ways are drawn from (characters, or 4x with rotated classes)."""
        return {phase: len(self.phase(phase)) * self.classes_per_character for phase in PHASES}

    def character_sizes(self) -> dict:
        """Characters per phase."""
        return {phase: len(self.phase(phase)) for phase in PHASES}


def vinyals_lines(phase: str) -> list:
    """The non-empty lines of the packaged ``vinyals`` list of ``phase``."""
    path = resources.files(VINYALS_PACKAGE).joinpath(VINYALS_FOLDER).joinpath(f"{phase}.txt")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"the vinyals split list {phase}.txt is missing from the omnimeta package ({error}); "
                        f"reinstall omnimeta.")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _vinyals_split(omniglot) -> Split:
    """Map the packaged lists onto ``omniglot``'s global ids, checking that each is whole and consistent."""
    by_name = {}
    for character, name in enumerate(omniglot.characters):  # "set/Alphabet/characterNN"
        by_name.setdefault(name.split("/", 1)[1], []).append(character)
    phase_of = {}
    phases = {}
    for phase in PHASES:
        rotations = {}  # "Alphabet/characterNN" -> its rotations, in order of first appearance
        for line in vinyals_lines(phase):
            match = VINYALS_LINE.match(line)
            if match is None or match["degrees"] not in VINYALS_DEGREES:
                raise DataError(f"line {line!r} of the vinyals {phase}.txt is not Alphabet/characterNN/rotDDD "
                                f"with DDD in {', '.join(VINYALS_DEGREES)}; reinstall omnimeta.")
            name = match["character"]
            if phase_of.setdefault(name, phase) != phase:
                raise DataError(f"the vinyals split lists {name} in both {phase_of[name]}.txt and {phase}.txt; "
                                f"reinstall omnimeta.")
            seen = rotations.setdefault(name, [])
            if match["degrees"] in seen:
                raise DataError(f"the vinyals {phase}.txt lists {line} twice; reinstall omnimeta.")
            seen.append(match["degrees"])
        for name, seen in rotations.items():
            if len(seen) != ROTATIONS:
                raise DataError(f"the vinyals {phase}.txt lists {name} with rotations {', '.join(seen)} only, "
                                f"not all of {', '.join(VINYALS_DEGREES)}; reinstall omnimeta.")
        missing = [name for name in rotations if len(by_name.get(name, ())) != 1]
        if missing:
            name = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            state = "lacks" if name not in by_name else "holds more than once"
            raise DataError(f"the vinyals split's {phase} phase needs {name}{more}, which the Omniglot at "
                            f"{omniglot.root} {state}; point --data-root at the full Omniglot (images_background "
                            f"and images_evaluation) or choose another --split.")
        phases[phase] = tuple(by_name[name][0] for name in rotations)
    return Split("vinyals", phases["train"], phases["val"], phases["test"], rotated_classes=True)


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
    if name == "vinyals":
        return _vinyals_split(omniglot)
    raise ConfigError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
