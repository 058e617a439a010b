"""Test sets from outside the task sampler: HW15 test folders and Lake's 20-way runs.

Both are read into :class:`~l2l_omniglot.data.tasks.TaskBatch` es through the
same pixel path as training images (:mod:`l2l_omniglot.data.images`), so a
model sees the same numbers whatever the source, size or mode of a file.

* **HW15** (ML2023 homework 15, Kaggle): ``support/NNNN/image_{0..N-1}.png``,
  one image per class (the class of ``image_i`` is ``i``), and
  ``query/NNNN/image_{0..N-1}.png``, one query per class in shuffled order. A
  submission is a CSV ``id,class`` with ``id = task * N + query``.
* **Lake's runs** (``all_runs.zip``, Lake et al. 2015): 20 runs of a 20-way
  one-shot problem, ``runNN/training/classNN.png`` (one drawing per class),
  ``runNN/test/itemNN.png`` and ``runNN/class_labels.txt`` giving the right
  class of each item.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2l_omniglot.atomic import write_text
from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE, decode_image, to_float
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.errors import DataError

UNKNOWN = -1  # the label of a query whose answer is not known


def _image_number(path: Path) -> int:
    match = re.fullmatch(r"image_(\d+)\.png", path.name)
    return int(match.group(1)) if match else -1


def read_hw15_folder(folder: Path, size: int = DEFAULT_IMAGE_SIZE) -> TaskBatch:
    """All tasks of an HW15 ``Omniglot-test`` folder; query labels are :data:`UNKNOWN`.

    Raises DataError (naming the path) for a wrong layout, a missing or extra
    file, or tasks of different sizes.
    """
    folder = Path(folder)
    support_root, query_root = folder / "support", folder / "query"
    if not support_root.is_dir() or not query_root.is_dir():
        raise DataError(f"{folder} is not an HW15 test folder: it needs support/ and query/ subfolders")
    support_tasks = sorted(p.name for p in support_root.iterdir() if p.is_dir())
    query_tasks = sorted(p.name for p in query_root.iterdir() if p.is_dir())
    if support_tasks != query_tasks:
        odd = sorted(set(support_tasks) ^ set(query_tasks))
        raise DataError(f"{folder}: tasks {', '.join(odd[:5])} are in only one of support/ and query/")
    if not support_tasks:
        raise DataError(f"{folder}: support/ holds no task folders")
    ways = None
    support, query = [], []
    for task in support_tasks:
        for root, images in ((support_root, support), (query_root, query)):
            files = sorted(root.joinpath(task).iterdir())
            numbers = sorted(_image_number(f) for f in files)
            if ways is None:
                ways = len(files)
            if len(files) != ways or numbers != list(range(ways)):
                raise DataError(
                    f"{root / task} must hold exactly image_0.png .. image_{ways - 1}.png like the other tasks "
                    f"(found {', '.join(f.name for f in files[:8]) or 'nothing'})")
            images.append(np.stack([decode_image(root / task / f"image_{i}.png", str(root / task / f"image_{i}.png"), size)
                                    for i in range(ways)]))
    count = len(support_tasks)
    return TaskBatch(
        support_x=to_float(torch.from_numpy(np.stack(support))),
        support_y=torch.arange(ways).repeat(count, 1),
        query_x=to_float(torch.from_numpy(np.stack(query))),
        query_y=torch.full((count, ways), UNKNOWN, dtype=torch.long),
        classes=torch.full((count, ways), UNKNOWN, dtype=torch.long),
    )


def write_submission(path: Path, predictions: torch.Tensor) -> list:
    """The HW15 CSV ``id,class`` (``id = task * ways + query``); returns the rows."""
    ways = predictions.shape[1]
    rows = [(t * ways + q, int(c)) for t, task in enumerate(predictions.tolist()) for q, c in enumerate(task)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "class"])
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
    return rows


def read_answers(path: Path) -> dict:
    """An HW15 answer (or submission) CSV as ``{id: class}``."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != ["id", "class"]:
                raise DataError(f"{path} must have the header id,class (found {reader.fieldnames})")
            return {int(row["id"]): int(row["class"]) for row in reader}
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read answers from {path} ({error}); give an id,class CSV")


@dataclass
class LakeRuns:
    """Lake's 20 runs as one TaskBatch (queries reordered so that ``query_y`` is sorted)."""

    tasks: TaskBatch
    names: list


def read_lake_runs(archive: Path, size: int = DEFAULT_IMAGE_SIZE) -> LakeRuns:
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"Lake's runs not found at {archive}; put all_runs.zip next to the Omniglot archives")
    try:
        with zipfile.ZipFile(archive) as runs:
            names = set(runs.namelist())
            run_names = sorted({n.split("/")[0] for n in names if re.match(r"run\d+/class_labels.txt$", n)})
            support, query = [], []
            for run in run_names:
                pairs = [line.split() for line in runs.read(f"{run}/class_labels.txt").decode().splitlines()
                         if line.strip()]
                classes = sorted({train for _, train in pairs})
                index = {name: i for i, name in enumerate(classes)}
                pairs.sort(key=lambda pair: index[pair[1]])
                if len(pairs) != len(classes):
                    raise DataError(f"{archive}: {run} does not have one test item per class")

                def image(name):
                    member = name if name in names else f"{run}/{name.split('/', 1)[1]}"
                    return decode_image(io.BytesIO(runs.read(member)), f"{archive}:{member}", size)

                support.append(np.stack([image(c) for c in classes]))
                query.append(np.stack([image(item) for item, _ in pairs]))
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise DataError(f"{archive} is not a readable all_runs.zip ({error}); replace it")
    if not run_names:
        raise DataError(f"{archive} holds no runNN/class_labels.txt")
    ways = support[0].shape[0]
    labels = torch.arange(ways).repeat(len(run_names), 1)
    tasks = TaskBatch(to_float(torch.from_numpy(np.stack(support))), labels,
                      to_float(torch.from_numpy(np.stack(query))), labels.clone(),
                      torch.full((len(run_names), ways), UNKNOWN, dtype=torch.long))
    return LakeRuns(tasks, run_names)
