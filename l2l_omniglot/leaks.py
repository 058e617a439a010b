"""Guards against scoring a model on characters it saw while training.

A run's meta-train and validation characters follow from its config (the
split) and the data (:func:`~l2l_omniglot.data.splits.make_split`); the
characters of a test set are found from its images. The checks compare
characters, never split names:

* Lake's 20-way runs (``all_runs.zip``) draw 200 characters of the evaluation
  set (:func:`~l2l_omniglot.data.testsets.lake_run_characters`). A model
  trained with ``--split random`` saw 141 of them (122 in meta-train, 19 in
  validation), with every drawing, so ``evaluate --benchmark lake20`` refuses
  it (:func:`check_lake20_clean`).
* An HW15 test folder is drawn from the evaluation alphabets, so ``predict``
  warns when a model's training classes include evaluation-set characters
  (:func:`predict_leak_report`).
* Any other benchmark names the characters its tasks draw, and a model that
  saw one of them is refused (:func:`check_unseen`).

A benchmark names its guard (``leak_guard``, a key of :data:`LEAK_GUARDS`);
:func:`guard_benchmark` applies it before the benchmark's tasks are scored.

So that ``predict`` needs only the model and the folder, a checkpoint
records the characters its run met (:func:`seen_characters_record`: the split,
and the meta-train and validation characters as ``set/Alphabet/characterNN``);
:func:`predict_leak_report` reads that record, and needs the data only for a
checkpoint written before it was kept.

Example::

    from l2l_omniglot.leaks import check_lake20_clean
    check_lake20_clean(config, omniglot, omniglot.root / "all_runs.zip")   # ConfigError if it leaks
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import load_omniglot, loaded, resolve_root
from l2l_omniglot.data.splits import make_split
from l2l_omniglot.data.testsets import lake_run_characters
from l2l_omniglot.errors import ConfigError


def seen_characters(config: RunConfig, omniglot) -> frozenset:
    """The global ids of the characters a run of ``config`` met while training: its meta-train and validation phases.

    Validation counts: the best checkpoint was chosen on those characters. With
    rotations as classes (``vinyals``, ``--augment rotate``) a character's
    turns are the same character.
    """
    split = make_split(config.split, omniglot)
    return frozenset(split.train) | frozenset(split.val)


def seen_characters_record(config: RunConfig, omniglot) -> dict:
    """What a checkpoint keeps for the leak checks: the split and the meta-train and validation characters by name.

    Names are ``background/Alphabet/characterNN`` or ``evaluation/...`` (the
    Omniglot set, the alphabet and the character), so they mean the same
    whichever copy of the data is installed, and where.
    """
    split = make_split(config.split, omniglot)
    names = omniglot.characters
    return {"split": config.split, "train": sorted({names[c] for c in split.train}),
            "val": sorted({names[c] for c in split.val})}


def check_seen_characters_record(record, config: RunConfig, path) -> dict:
    """``record`` when it is a well-formed :func:`seen_characters_record` of ``config``'s split; else ConfigError."""
    well_formed = (isinstance(record, dict) and record.get("split") == config.split
                   and all(isinstance(record.get(part), list) and all(isinstance(n, str) for n in record[part])
                           for part in ("train", "val")))
    if not well_formed:
        raise ConfigError(f"{path} holds a damaged record of the characters its run trained on (leak_record); "
                          f"retrain, or restore the file from a backup")
    return record


def check_lake20_clean(config: RunConfig, omniglot, archive: Path) -> None:
    """ConfigError (one line) when a run of ``config`` saw any character of Lake's runs in ``archive``."""
    runs = lake_run_characters(omniglot, archive)
    seen = seen_characters(config, omniglot) & runs
    if seen:
        raise ConfigError(f"this model saw {len(seen)} of the {len(runs)} characters of Lake's runs while training "
                          f"(meta-train or validation, split {config.split}); lake20 would overstate it: evaluate "
                          f"a model trained with --split lake")


def evaluation_overlap(config: RunConfig, omniglot) -> int:
    """How many characters of the Omniglot evaluation set a run of ``config`` met while training."""
    first_evaluation = len(omniglot.background.characters)
    return sum(1 for character in seen_characters(config, omniglot) if character >= first_evaluation)


def predict_leak_report(config: RunConfig, omniglot=None, record: Optional[dict] = None) -> dict:
    """What ``predict`` adds to its report: the overlap with the evaluation set, and a warning when there is one.

    HW15 test folders are drawn from the evaluation alphabets, so a model that
    trained on evaluation-set characters may have seen the folder's
    characters. With the checkpoint's ``record`` (:func:`seen_characters_record`)
    no data is needed; without it ``omniglot`` is, by default the data at
    ``$OMNIMETA_DATA``.
    """
    if record is not None:
        overlap = len({name for part in ("train", "val") for name in record[part] if name.startswith("evaluation/")})
    else:
        overlap = evaluation_overlap(config, omniglot if omniglot is not None else load_omniglot())
    warning: Optional[str] = None
    if overlap:
        warning = (f"this model trained on {overlap} characters of the Omniglot evaluation set (meta-train or "
                   f"validation, split {config.split}), which HW15 test folders are drawn from; its accuracy here "
                   f"may be overstated: use a model trained with --split lake")
    return {"evaluation_characters_seen": overlap, "leak_warning": warning}


def check_unseen(config: RunConfig, omniglot, characters: frozenset, benchmark: str) -> None:
    """ConfigError (one line) when a run of ``config`` saw any of ``characters``, which ``benchmark`` scores on."""
    seen = seen_characters(config, omniglot) & frozenset(characters)
    if seen:
        raise ConfigError(f"this model saw {len(seen)} of the {len(characters)} characters of benchmark {benchmark} "
                          f"while training (meta-train or validation, split {config.split}); its score would be "
                          f"overstated: evaluate a model that never met them")


def _guard_characters(benchmark, config: RunConfig, omniglot, record=None) -> dict:
    data = loaded(omniglot)
    check_unseen(config, data, benchmark.characters(config, data), benchmark.name)
    return {}


def _guard_lake_runs(benchmark, config: RunConfig, omniglot, record=None) -> dict:
    data = loaded(omniglot)
    check_lake20_clean(config, data, resolve_root(data.root) / "all_runs.zip")
    return {}


def _guard_evaluation_set(benchmark, config: RunConfig, omniglot, record=None) -> dict:
    # The checkpoint's record of its characters (by name) answers without the data (predict needs none).
    return predict_leak_report(config, None if record is not None else loaded(omniglot), record)


#: The guards a benchmark may name: each refuses (ConfigError) or returns what the report adds (a warning).
LEAK_GUARDS: dict = {
    "characters": _guard_characters,          # refuse a model that saw any of benchmark.characters(...)
    "lake_runs": _guard_lake_runs,            # refuse a model that saw any of Lake's runs' characters
    "evaluation_set": _guard_evaluation_set,  # warn when a model saw evaluation-set characters (HW15 folders)
    "none": lambda benchmark, config, omniglot, record=None: {},
}


def guard_benchmark(benchmark, config: RunConfig, omniglot, record: Optional[dict] = None) -> dict:
    """Apply the guard ``benchmark.leak_guard`` names; returns what it adds to the report.

    ``omniglot`` is the data or a function that loads it; ``record`` the checkpoint's
    :func:`seen_characters_record` (checked), which spares the data where a guard can use it.
    """
    guard: Optional[Callable] = LEAK_GUARDS.get(benchmark.leak_guard)
    if guard is None:
        raise ConfigError(f"benchmark {benchmark.name} names the leak guard {benchmark.leak_guard!r}; use one of "
                          f"{', '.join(LEAK_GUARDS)}")
    return guard(benchmark, config, omniglot, record)
