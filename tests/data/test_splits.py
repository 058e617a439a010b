import pytest

from l2l_omniglot.data.splits import LAKE_VALIDATION_ALPHABETS, SPLITS, make_split
from l2l_omniglot.errors import ConfigError


@pytest.mark.parametrize("name", ["lake", "random", "vinyals"])
def test_splits_are_disjoint_and_cover_every_character(omniglot, name):
    split = make_split(name, omniglot)
    train, val, test = map(set, (split.train, split.val, split.test))
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1623


def test_lake_split_tests_on_the_evaluation_alphabets(omniglot, lake_split):
    alphabet_of = omniglot.alphabet_of
    assert {alphabet_of[c].split("/")[0] for c in lake_split.test} == {"evaluation"}
    assert len(lake_split.test) == 659
    val_alphabets = {alphabet_of[c] for c in lake_split.val}
    assert val_alphabets == {f"background/{a}" for a in LAKE_VALIDATION_ALPHABETS}
    assert {alphabet_of[c].split("/")[0] for c in lake_split.train} == {"background"}


def test_random_split_has_the_literature_sizes(omniglot):
    assert make_split("random", omniglot).sizes() == {"train": 1100, "val": 100, "test": 423}
    assert make_split("random", omniglot) == make_split("random", omniglot)


def test_lake_is_the_first_split_and_vinyals_is_offered():
    assert SPLITS == ("lake", "random", "vinyals")


@pytest.mark.parametrize("name,sizes", [
    ("lake", {"train": 768, "val": 196, "test": 659}),
    ("random", {"train": 1100, "val": 100, "test": 423}),
])
def test_lake_and_random_classes_are_their_characters(omniglot, name, sizes):
    split = make_split(name, omniglot)
    assert not split.rotated_classes
    assert split.sizes() == split.character_sizes() == sizes


def test_unknown_split_is_an_error(omniglot):
    with pytest.raises(ConfigError, match="unknown split 'easy'"):
        make_split("easy", omniglot)
