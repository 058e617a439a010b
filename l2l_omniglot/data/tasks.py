"""N-way K-shot tasks, built by learn2learn.

A phase of a split (its characters) becomes a :class:`CharacterImages`
dataset, with each character's quarter-turns as classes of their own when
the split says so (``vinyals``) or, for meta-train only, with ``--augment
rotate``; ``--augment distort`` draws every meta-train image under a small
random affine map (:func:`~l2l_omniglot.data.images.distort`), and
``rotate+distort`` does both. learn2learn's ``MetaDataset`` indexes it by class, and a
``TaskDataset`` with the transforms ``FusedNWaysKShots`` (N classes, K + Q
images each), ``LoadData``, ``RemapLabels`` (task-local labels 0..N-1, in a
random order) and ``ConsecutiveLabels`` describes and loads each task.
It is then cut into support and query, as learn2learn's ``partition_task`` does.

Tasks are a function of ``(seed, iteration, task index)`` alone: each task
reseeds the ``random`` module that learn2learn's transforms draw from (and
restores it afterwards). So the stream does not depend on how many tasks were
drawn before, on the process or on resumption, and the validation and test
lists are fixed for a seed: every solver is scored on the same tasks.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Optional

import torch

from l2l_omniglot._learn2learn import learn2learn as l2l
from l2l_omniglot.data.images import distort, to_float
from l2l_omniglot.data.omniglot import IMAGES_PER_CHARACTER
from l2l_omniglot.data.splits import ROTATIONS
from l2l_omniglot.errors import ConfigError

AUGMENTS = ("none", "rotate", "distort", "rotate+distort")


def augmentations(augment: str) -> set:
    """The parts of an ``--augment`` value: ``"rotate+distort"`` is ``{"rotate", "distort"}``."""
    if augment not in AUGMENTS:
        raise ConfigError(f"unknown augment {augment!r}; use one of {', '.join(AUGMENTS)}")
    return set(augment.split("+")) - {"none"}


class CharacterImages(torch.utils.data.Dataset):
    """The images of some characters, as ``(float image [1, S, S], class)`` pairs.

    Classes are ``0..C-1`` in the order of ``characters``. With
    ``rotate=True`` each character's quarter-turns become classes of their own
    (class ``4 * c + k`` is character ``c`` turned ``k`` times 90 degrees
    counter-clockwise), the task augmentation of Santoro et al. (2016) used by
    the MAML paper. Counter-clockwise is the sense of PIL's ``Image.rotate``,
    with which the Prototypical Networks code turns the ``vinyals`` lists'
    ``rotDDD`` classes, so there class ``4 * c + k`` is the ``c``-th character
    at ``DDD = 90 * k`` (for the packaged lists, line ``4 * c + k``).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, characters, rotate: bool = False):
        characters = torch.as_tensor(list(characters), dtype=torch.long)
        position = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        position[characters] = torch.arange(len(characters))
        keep = position[labels] >= 0
        self.images = to_float(images[keep])
        self.labels = position[labels[keep]]
        self.characters = characters
        self.rotate = rotate
        if rotate:
            self.images = torch.cat([torch.rot90(self.images, k, dims=(-2, -1)) for k in range(ROTATIONS)])
            self.labels = torch.cat([self.labels * ROTATIONS + k for k in range(ROTATIONS)])
        self.num_classes = len(characters) * (ROTATIONS if rotate else 1)
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        self.labels_to_indices = {c: idx.tolist() for c, idx in enumerate(torch.split(order, counts))}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


@dataclass
class TaskBatch:
    """A stack of tasks with the same shape.

    ``support_x`` is ``[tasks, ways * shots, 1, S, S]`` and ``support_y`` its
    task-local labels, sorted (``shots`` images of class 0, then class 1, ...);
    likewise ``query_x`` / ``query_y`` with ``queries`` per class.
    ``classes[t, label]`` is the dataset class behind a local label, for
    solvers that learn over all classes. A solver's ``predict`` is handed the
    tasks :meth:`without_query_labels` (``query_y`` is None), as at test time.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: Optional[torch.Tensor]
    classes: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    @property
    def ways(self) -> int:
        return self.classes.shape[1]

    @property
    def shots(self) -> int:
        return self.support_y.shape[1] // self.ways

    @property
    def queries(self) -> int:
        return self.query_x.shape[1] // self.ways

    def without_query_labels(self) -> "TaskBatch":
        """The same tasks with no query labels: all that a solver's ``predict`` may see."""
        return dataclasses.replace(self, query_y=None)

    def labelled_images(self) -> tuple:
        """Every support and query image with its dataset class: ``([M, 1, S, S], [M])``.

        For solvers that learn one classifier over all classes rather than tasks.
        """
        images = torch.cat([self.support_x.flatten(0, 1), self.query_x.flatten(0, 1)])
        labels = torch.cat([self.classes.gather(1, self.support_y).flatten(),
                            self.classes.gather(1, self.query_y).flatten()])
        return images, labels

    def __getitem__(self, index) -> "TaskBatch":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return TaskBatch(*(_apply(getattr(self, f.name), lambda t: t[index]) for f in fields(self)))

    def to(self, device) -> "TaskBatch":
        return TaskBatch(*(_apply(getattr(self, f.name), lambda t: t.to(device)) for f in fields(self)))

    def chunks(self, size: int) -> Iterator["TaskBatch"]:
        for start in range(0, len(self), size):
            yield self[start:start + size]

    @staticmethod
    def stack(tasks: list) -> "TaskBatch":
        return TaskBatch(*(torch.cat([getattr(t, f.name) for t in tasks]) for f in fields(TaskBatch)))


def _apply(tensor: Optional[torch.Tensor], change: Callable) -> Optional[torch.Tensor]:
    return None if tensor is None else change(tensor)


def check_task_shape(ways: int, shots: int, queries: int, available_classes: Optional[int] = None,
                     phase: str = "split") -> None:
    """Raise ConfigError naming the limit when a task cannot be built."""
    if ways < 2:
        raise ConfigError(f"--ways must be at least 2 (got {ways})")
    if available_classes is not None and ways > available_classes:
        raise ConfigError(f"--ways {ways} exceeds the {available_classes} classes of the {phase}; lower --ways")
    if shots < 1:
        raise ConfigError(f"--shots must be at least 1 (got {shots})")
    if queries < 1:
        raise ConfigError(f"--queries must be at least 1 (got {queries})")
    if shots + queries > IMAGES_PER_CHARACTER:
        raise ConfigError(
            f"--shots + --queries must be at most {IMAGES_PER_CHARACTER}, the drawings per character "
            f"(got {shots} + {queries})"
        )


def drawing_new_tasks(meta, n: int, k: int):
    """learn2learn's ``FusedNWaysKShots(meta, n, k)``, built in linear time, for the first transform of a task set.

    Its constructor also builds a label filter that tests every image's label for membership in a *list* of
    all labels: quadratic, 1.3 s of every start on the Vinyals split (4112 training classes, 96,000 images).
    That filter only acts on a task description handed to the transform; the first transform of a
    ``TaskDataset`` is handed none and draws a new task from ``filter_labels`` alone. So the filter is built
    over one label, and the drawing list is then set to all labels, in learn2learn's order: the same tasks
    from the same random state (``tests/data/test_tasks.py`` compares them with the slow construction).
    """
    transform = l2l.data.transforms.FusedNWaysKShots(meta, n=n, k=k, filter_labels=meta.labels[:1])
    transform.filter_labels = meta.labels
    return transform


class TaskSampler:
    """Samples tasks of one shape from a :class:`CharacterImages` with learn2learn.

    With ``distort`` every image of a task is drawn under its own random
    affine map (:func:`~l2l_omniglot.data.images.distort`), from the task's
    own random stream, so a task is still a function of its seed, iteration
    and index.
    """

    def __init__(self, dataset: CharacterImages, ways: int, shots: int, queries: int, phase: str = "split",
                 distort: bool = False):
        check_task_shape(ways, shots, queries, dataset.num_classes, phase)
        self.dataset = dataset
        self.distort = distort
        self.ways, self.shots, self.queries = ways, shots, queries
        self.meta = l2l.data.MetaDataset(dataset, labels_to_indices=dataset.labels_to_indices)
        transforms = [
            drawing_new_tasks(self.meta, n=ways, k=shots + queries),
            l2l.data.transforms.LoadData(self.meta),
            l2l.data.transforms.RemapLabels(self.meta),
            l2l.data.transforms.ConsecutiveLabels(self.meta),
        ]
        self.taskset = l2l.data.TaskDataset(self.meta, task_transforms=transforms, num_tasks=-1)

    def _one_task(self) -> TaskBatch:
        description = self.taskset.sample_task_description()
        x, y = self.taskset.get_task(description)
        # ConsecutiveLabels leaves each class's shots + queries images side by side, so support and query are a
        # reshape and a sort of the class blocks away: what learn2learn's partition_task returns, at a fraction
        # of its cost (sampling must stay a small part of an iteration).
        per_class = self.shots + self.queries
        x, y = x.view(self.ways, per_class, *x.shape[1:]), y.view(self.ways, per_class)
        if not torch.equal(y, y[:, :1].expand(-1, per_class)):
            raise RuntimeError("learn2learn's ConsecutiveLabels did not group the task's images by class")
        order = torch.argsort(y[:, 0])
        x, y = x[order], y[order]
        per_class_items = description[::per_class]  # the description is in the images' order
        classes = torch.tensor([self.meta.indices_to_labels[item.index] for item in per_class_items])[order]
        if self.distort:
            # The random module was just seeded for this task (sample), so its distortions are fixed too.
            x = torch.stack([distort(image, random) for image in x.flatten(0, 1)]).view_as(x)
        sx, qx = x[:, :self.shots].flatten(0, 1), x[:, self.shots:].flatten(0, 1)
        sy, qy = y[:, :self.shots].flatten(), y[:, self.shots:].flatten()
        return TaskBatch(sx[None], sy[None], qx[None], qy[None], classes[None])

    def sample(self, seed: int, iteration: int, count: int, first: int = 0) -> TaskBatch:
        """Tasks ``first .. first + count - 1`` of ``iteration`` in the stream of ``seed``."""
        outer_state = random.getstate()
        try:
            tasks = []
            for index in range(first, first + count):
                random.seed(f"omnimeta:{seed}:{iteration}:{index}")
                tasks.append(self._one_task())
        finally:
            random.setstate(outer_state)
        return TaskBatch.stack(tasks)


#: Iteration numbers reserved for the fixed evaluation lists.
VALIDATION_STREAM = -1
TEST_STREAM = -2
#: The evaluation lists do not depend on a run's training seed, so runs with
#: different seeds (and different solvers) are scored on the same tasks.
EVALUATION_SEED = 0


def fixed_tasks(sampler: TaskSampler, count: int, stream: int, seed: int = EVALUATION_SEED) -> TaskBatch:
    """A fixed list of ``count`` tasks: the first ``count`` of ``stream``, the same for every solver."""
    if count < 1:
        raise ConfigError(f"the number of evaluation tasks must be at least 1 (got {count})")
    return sampler.sample(seed, stream, count)


def phase_samplers(omniglot, split, ways: int, shots: int, queries: int, augment: str = "none",
                   phases=("train", "val", "test")) -> dict:
    """One :class:`TaskSampler` per phase of ``split``; ``augment`` applies to meta-train only.

    A split with ``rotated_classes`` (``vinyals``) rotates every phase: its
    validation and test classes are rotations too, as in the published
    results that use it. Rotation as an augmentation would add nothing there,
    and is refused rather than silently ignored.
    """
    parts = augmentations(augment)
    if "rotate" in parts and split.rotated_classes:
        raise ConfigError(f"the {split.name} split already has rotations as classes; drop rotate from --augment")
    images, labels = omniglot.all_images()
    samplers = {}
    for phase in phases:
        training = phase == "train"
        rotate = split.rotated_classes or ("rotate" in parts and training)
        dataset = CharacterImages(images, labels, split.phase(phase), rotate=rotate)
        samplers[phase] = TaskSampler(dataset, ways, shots, queries, phase=f"{split.name} {phase} phase",
                                      distort="distort" in parts and training)
    return samplers
