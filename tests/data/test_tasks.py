import random

import pytest
import torch

from l2l_omniglot._learn2learn import learn2learn as l2l
from l2l_omniglot.data.tasks import TEST_STREAM, CharacterImages, drawing_new_tasks, fixed_tasks, phase_samplers
from l2l_omniglot.errors import ConfigError


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 5), (20, 5, 15)])
def test_task_shapes_and_labels(omniglot, lake_split, ways, shots, queries):
    sampler = phase_samplers(omniglot, lake_split, ways, shots, queries, phases=("test",))["test"]
    tasks = sampler.sample(seed=0, iteration=1, count=3)
    assert tasks.support_x.shape == (3, ways * shots, 1, 28, 28)
    assert tasks.query_x.shape == (3, ways * queries, 1, 28, 28)
    expected_support = torch.arange(ways).repeat_interleave(shots)
    expected_query = torch.arange(ways).repeat_interleave(queries)
    for t in range(3):
        assert torch.equal(tasks.support_y[t], expected_support)
        assert torch.equal(tasks.query_y[t], expected_query)
        assert len(set(tasks.classes[t].tolist())) == ways
    # Every image of a local class really is a drawing of the class behind it.
    dataset = sampler.dataset
    for t in range(3):
        for label in range(ways):
            images = torch.cat([tasks.support_x[t][tasks.support_y[t] == label],
                                tasks.query_x[t][tasks.query_y[t] == label]])
            of_class = dataset.images[dataset.labels == tasks.classes[t, label]]
            for image in images:
                assert (of_class == image).flatten(1).all(dim=1).any()


def test_same_seed_gives_the_same_tasks_and_other_seeds_do_not(omniglot, lake_split):
    sampler = phase_samplers(omniglot, lake_split, 5, 1, 1, phases=("train",))["train"]
    first = sampler.sample(seed=3, iteration=7, count=4)
    again = sampler.sample(seed=3, iteration=7, count=4)
    other = sampler.sample(seed=4, iteration=7, count=4)
    assert torch.equal(first.support_x, again.support_x) and torch.equal(first.classes, again.classes)
    assert not torch.equal(first.classes, other.classes)
    # A task is a function of its index, not of what was drawn before it.
    assert torch.equal(sampler.sample(seed=3, iteration=7, count=2, first=2).classes, first.classes[2:])


def test_the_linear_time_transform_draws_learn2learn_s_tasks(omniglot, lake_split):
    """drawing_new_tasks skips FusedNWaysKShots's quadratic label filter; the drawn tasks must not change."""
    meta = phase_samplers(omniglot, lake_split, 5, 1, 1, phases=("val",))["val"].meta
    fast = drawing_new_tasks(meta, n=5, k=3)
    plain = l2l.data.transforms.FusedNWaysKShots(meta, n=5, k=3)
    assert fast.filter_labels == plain.filter_labels == meta.labels
    for seed in range(20):
        random.seed(seed)
        drawn = [d.index for d in fast(None)]
        random.seed(seed)
        assert drawn == [d.index for d in plain(None)]


def test_fixed_test_tasks_are_the_same_for_every_sampler(omniglot, lake_split):
    a = phase_samplers(omniglot, lake_split, 5, 1, 5, phases=("test",))["test"]
    b = phase_samplers(omniglot, lake_split, 5, 1, 5, phases=("test",))["test"]
    assert torch.equal(fixed_tasks(a, 20, TEST_STREAM).query_x, fixed_tasks(b, 20, TEST_STREAM).query_x)


def test_rotation_makes_quarter_turns_classes_of_their_own(omniglot):
    images, labels = omniglot.all_images()
    plain = CharacterImages(images, labels, [0, 1])
    rotated = CharacterImages(images, labels, [0, 1], rotate=True)
    assert plain.num_classes == 2 and rotated.num_classes == 8
    first = plain.images[plain.labels == 1][0]
    for k in range(4):
        turned = rotated.images[rotated.labels == 4 * 1 + k][0]
        assert torch.equal(turned, torch.rot90(first, k, dims=(-2, -1)))
    assert not torch.equal(rotated.images[rotated.labels == 5][0], first)


def test_rotation_applies_to_meta_train_only(omniglot, lake_split):
    samplers = phase_samplers(omniglot, lake_split, 5, 1, 1, augment="rotate")
    assert samplers["train"].dataset.num_classes == 4 * len(lake_split.train)
    assert samplers["val"].dataset.num_classes == len(lake_split.val)
    assert samplers["test"].dataset.num_classes == len(lake_split.test)


def test_distortion_redraws_meta_train_images_only_and_keeps_their_classes(omniglot, lake_split):
    plain = phase_samplers(omniglot, lake_split, 5, 1, 2)
    distorted = phase_samplers(omniglot, lake_split, 5, 1, 2, augment="distort")
    a, b = plain["train"].sample(0, 3, 4), distorted["train"].sample(0, 3, 4)
    assert torch.equal(a.classes, b.classes) and torch.equal(a.support_y, b.support_y)
    assert torch.equal(a.query_y, b.query_y)
    difference = (a.support_x - b.support_x).abs().flatten(1).mean(dim=1)
    assert bool((difference > 0).all())  # every task's images moved
    # A small map of the same drawing: the ink stays within the [0, 1] range and keeps most of its amount.
    assert float(b.support_x.min()) >= 0.0 and float(b.support_x.max()) <= 1.0
    ink_ratio = b.support_x.flatten(2).sum(-1) / a.support_x.flatten(2).sum(-1)
    assert 0.5 < float(ink_ratio.min()) and float(ink_ratio.max()) < 1.6
    assert torch.equal(b.support_x, distorted["train"].sample(0, 3, 4).support_x)  # a function of the seed
    assert not torch.equal(b.support_x, distorted["train"].sample(1, 3, 4).support_x)
    for phase in ("val", "test"):
        assert torch.equal(plain[phase].sample(0, 1, 2).query_x, distorted[phase].sample(0, 1, 2).query_x)


def test_rotate_and_distort_combine(omniglot, lake_split):
    samplers = phase_samplers(omniglot, lake_split, 5, 1, 1, augment="rotate+distort", phases=("train",))
    assert samplers["train"].dataset.num_classes == 4 * len(lake_split.train) and samplers["train"].distort


@pytest.mark.parametrize("ways,shots,queries,message", [
    (1, 1, 1, "--ways must be at least 2"),
    (700, 1, 1, "exceeds the 659 classes"),
    (5, 0, 1, "--shots must be at least 1"),
    (5, 10, 11, "at most 20"),
])
def test_impossible_tasks_name_the_limit(omniglot, lake_split, ways, shots, queries, message):
    with pytest.raises(ConfigError, match=message):
        phase_samplers(omniglot, lake_split, ways, shots, queries, phases=("test",))


def test_labelled_images_pair_every_image_with_its_dataset_class(omniglot, lake_split):
    sampler = phase_samplers(omniglot, lake_split, 5, 1, 2, phases=("train",))["train"]
    tasks = sampler.sample(seed=0, iteration=1, count=3)
    images, labels = tasks.labelled_images()
    assert images.shape == (3 * 5 * 3, 1, 28, 28) and labels.shape == (45,)
    dataset = sampler.dataset
    for image, label in zip(images, labels):
        of_class = dataset.images[dataset.labels == label]
        assert (of_class == image).flatten(1).all(dim=1).any()
