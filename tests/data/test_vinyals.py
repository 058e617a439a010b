"""The ``vinyals`` split: packaged lists, their mapping onto Omniglot, and rotated classes in every phase."""
import numpy as np
import pytest
import torch
from PIL import Image

from l2l_omniglot.data import splits
from l2l_omniglot.data.images import to_float
from l2l_omniglot.data.splits import PHASES, make_split, vinyals_lines
from l2l_omniglot.data.tasks import TEST_STREAM, VALIDATION_STREAM, fixed_tasks, phase_samplers
from l2l_omniglot.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def vinyals(omniglot):
    return make_split("vinyals", omniglot)


def test_vinyals_has_the_published_class_and_character_counts(vinyals):
    assert vinyals.rotated_classes
    assert vinyals.sizes() == {"train": 4112, "val": 688, "test": 1692}
    assert vinyals.character_sizes() == {"train": 1028, "val": 172, "test": 423}


def test_lists_ship_inside_the_package():
    assert {phase: len(vinyals_lines(phase)) for phase in PHASES} == {"train": 4112, "val": 688, "test": 1692}
    license_text = splits.resources.files("l2l_omniglot.data").joinpath("vinyals").joinpath("LICENSE").read_text()
    assert "MIT License" in license_text and "Jake Snell" in license_text


def test_no_character_is_in_two_phases_and_all_are_used(vinyals):
    train, val, test = map(set, (vinyals.train, vinyals.val, vinyals.test))
    assert not train & val and not train & test and not val & test
    assert (len(train), len(val), len(test)) == (len(vinyals.train), len(vinyals.val), len(vinyals.test))  # no repeats
    assert len(train | val | test) == 1623  # 1,028 + 172 + 423: every Omniglot character


def test_every_listed_class_is_its_character_turned_in_list_order(omniglot, vinyals):
    # Class 4 * c + k of a phase is the c-th character turned k quarter-turns, which is line 4 * c + k.
    names = omniglot.characters  # "set/Alphabet/characterNN"
    for phase in PHASES:
        classes = [f"{names[c].split('/', 1)[1]}/rot{90 * k:03d}" for c in vinyals.phase(phase) for k in range(4)]
        assert classes == vinyals_lines(phase)
    sets = {phase: {names[c].split("/")[0] for c in vinyals.phase(phase)} for phase in PHASES}
    assert sets == {"train": {"background", "evaluation"}, "val": {"background"}, "test": {"evaluation"}}


def test_rotation_sense_matches_pil_rotate_of_the_protonet_code(omniglot, vinyals):
    # The ProtoNet code turns class rotDDD with PIL's Image.rotate(DDD), counter-clockwise.
    samplers = phase_samplers(omniglot, vinyals, 5, 1, 1, phases=("val",))
    dataset = samplers["val"].dataset
    images, labels = omniglot.all_images()
    c = 3
    drawing = images[labels == vinyals.val[c]][0].numpy()
    for k in range(4):
        pil = to_float(torch.from_numpy(np.array(Image.fromarray(drawing).rotate(90 * k))))
        assert torch.equal(dataset.images[dataset.labels == 4 * c + k][0], pil)


@pytest.mark.parametrize("phase,stream", [("val", VALIDATION_STREAM), ("test", TEST_STREAM)])
def test_evaluation_tasks_draw_rotated_classes(omniglot, vinyals, phase, stream):
    sampler = phase_samplers(omniglot, vinyals, 20, 1, 1, phases=(phase,))[phase]
    assert sampler.dataset.num_classes == vinyals.sizes()[phase]
    tasks = fixed_tasks(sampler, 3, stream)
    assert (tasks.classes % 4 != 0).any()  # 60 classes drawn from the four rotations: not all upright
    images, labels = omniglot.all_images()
    characters = vinyals.phase(phase)
    for t in range(len(tasks)):
        for label in range(tasks.ways):
            cls = int(tasks.classes[t, label])
            upright = to_float(images[labels == characters[cls // 4]])
            turned = torch.rot90(upright, cls % 4, dims=(-2, -1))
            for image in torch.cat([tasks.support_x[t][tasks.support_y[t] == label],
                                    tasks.query_x[t][tasks.query_y[t] == label]]):
                assert (turned == image).flatten(1).all(dim=1).any()


@pytest.mark.parametrize("augment", ["rotate", "rotate+distort"])
def test_augment_rotate_is_refused(omniglot, vinyals, augment):
    with pytest.raises(ConfigError) as error:
        phase_samplers(omniglot, vinyals, 5, 1, 1, augment=augment)
    assert str(error.value) == "the vinyals split already has rotations as classes; drop rotate from --augment"


def test_augment_distort_is_allowed(omniglot, vinyals):
    assert phase_samplers(omniglot, vinyals, 5, 1, 1, augment="distort", phases=("train",))["train"].distort


def test_ways_are_checked_against_the_rotated_classes(omniglot, vinyals):
    with pytest.raises(ConfigError, match="exceeds the 688 classes of the vinyals val phase"):
        phase_samplers(omniglot, vinyals, 689, 1, 1, phases=("val",))


def test_an_omniglot_without_the_listed_characters_is_a_data_error(tiny_root, cache_dir):
    from l2l_omniglot import load_omniglot

    tiny = load_omniglot(tiny_root)
    with pytest.raises(DataError, match=r"needs Angelic/character01 \(and 1027 more\).*--data-root") as error:
        make_split("vinyals", tiny)
    assert "\n" not in str(error.value)


def fake_lists(monkeypatch, **lines):
    monkeypatch.setattr(splits, "vinyals_lines", lambda phase: lines.get(phase, []))


def four(character):
    return [f"{character}/rot{d}" for d in ("000", "090", "180", "270")]


@pytest.mark.parametrize("lists,message", [
    ({"train": four("Latin/character01"), "test": four("Latin/character01")},
     "lists Latin/character01 in both train.txt and test.txt"),
    ({"val": four("Latin/character01")[:3]}, "lists Latin/character01 with rotations 000, 090, 180 only"),
    ({"train": four("Latin/character01") + ["Latin/character01/rot090"]}, "lists Latin/character01/rot090 twice"),
    ({"test": ["Latin/character01/rot045"]}, "is not Alphabet/characterNN/rotDDD"),
])
def test_damaged_lists_are_one_line_data_errors(omniglot, monkeypatch, lists, message):
    fake_lists(monkeypatch, **lists)
    with pytest.raises(DataError, match=message) as error:
        make_split("vinyals", omniglot)
    assert "\n" not in str(error.value)
