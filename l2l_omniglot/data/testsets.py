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

:func:`lake_run_characters` says which Omniglot characters Lake's runs draw,
by matching their pixels against the decoded sets (the leak checks of
:mod:`l2l_omniglot.leaks` use it).
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2l_omniglot.atomic import write_text
from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE, decode_image, refuse_oversized, to_float
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.errors import DataError

UNKNOWN = -1  # the label of a query whose answer is not known


_TASK_NAME = re.compile(r"[0-9]+")
_IMAGE_NAME = re.compile(r"image_([0-9]+)\.png")


def _listing(folder: Path) -> list:
    """The entries of ``folder``, sorted, hidden ones (``.DS_Store``, ``._x``) left out; DataError if unreadable."""
    try:
        return sorted((entry for entry in folder.iterdir() if not entry.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        raise DataError(f"{folder} cannot be listed ({error.strerror}); make it readable") from None


def _numbered(entries: list, number, pattern: str, noun: str, where: Path) -> dict:
    """``{int: entry}`` for entries numbered by ``number(name)``; DataError for a name that is
    not numbered (not like ``pattern``) or a number that two names share (``01`` and ``1``)."""
    numbered = {}
    for entry in entries:
        value = number(entry.name)
        if value is None:
            raise DataError(f"{entry} is not named like {pattern}; remove it or rename it")
        if value in numbered:
            raise DataError(f"{where}: {numbered[value].name} and {entry.name} are both {noun} {value}; "
                            f"keep one of them")
        numbered[value] = entry
    return numbered


def _task_number(name: str):
    return int(name) if _TASK_NAME.fullmatch(name) else None


def _image_number(name: str):
    match = _IMAGE_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def _hw15_tasks(root: Path) -> dict:
    """``{task number: folder}`` under ``support/`` or ``query/``; a stray file there is refused."""
    entries = _listing(root)
    for entry in entries:
        if not entry.is_dir():
            raise DataError(f"{entry} is not a task folder; HW15's {root.name}/ holds only folders "
                            f"named by number, remove it")
    return _numbered(entries, _task_number, "NNNN (a task number)", "task", root)


def read_hw15_folder(folder: Path, size: int = DEFAULT_IMAGE_SIZE) -> TaskBatch:
    """All tasks of an HW15 ``Omniglot-test`` folder; query labels are :data:`UNKNOWN`.

    Tasks are numbered by the integer of their folder names (``1, 2, ..., 10``
    and ``0000 .. 0039`` alike), and task ``t`` of the batch is the ``t``-th by
    number, so a submission's ``id = t * ways + query`` follows the folder
    numbers. The numbers must run without a gap (a missing task would shift
    every later id); images are numbered likewise by the integer in
    ``image_N.png`` (``image_01.png`` is image 1) and must be ``0 .. ways-1``.
    Hidden entries (``.DS_Store``) are ignored.

    Raises DataError (naming the path) for a wrong layout; a folder name that
    is not a number, or two names with one number (``01`` and ``1``); a gap; a
    missing, extra or undecodable image; or tasks of different sizes.
    """
    folder = Path(folder)
    support_root, query_root = folder / "support", folder / "query"
    if not support_root.is_dir() or not query_root.is_dir():
        raise DataError(f"{folder} is not an HW15 test folder: it needs support/ and query/ subfolders")
    support_tasks, query_tasks = _hw15_tasks(support_root), _hw15_tasks(query_root)
    if support_tasks.keys() != query_tasks.keys():
        odd = sorted(set(support_tasks) ^ set(query_tasks))
        names = [(support_tasks.get(n) or query_tasks[n]).name for n in odd[:5]]
        raise DataError(f"{folder}: tasks {', '.join(names)} are in only one of support/ and query/; "
                        f"restore the missing half or remove the task")
    if not support_tasks:
        raise DataError(f"{folder}: support/ holds no task folders")
    numbers = sorted(support_tasks)
    missing = numbers[-1] - numbers[0] + 1 - len(numbers)
    if missing:
        first, last = support_tasks[numbers[0]].name, support_tasks[numbers[-1]].name
        gaps = [n for a, b in zip(numbers, numbers[1:]) for n in range(a + 1, min(b, a + 6))][:5]
        listed = ", ".join(str(gap).zfill(len(first)) for gap in gaps) + (", ..." if missing > len(gaps) else "")
        raise DataError(f"{folder}: tasks are numbered {first} to {last} but {listed} "
                        f"{'is' if missing == 1 else f'({missing} in all) are'} missing, which would shift the "
                        f"submission ids; restore the missing tasks")
    ways = None
    support, query = [], []
    for number in numbers:
        for tasks, images in ((support_tasks, support), (query_tasks, query)):
            task = tasks[number]
            files = _numbered(_listing(task), _image_number, "image_N.png (N a number)", "image", task)
            if not files:
                raise DataError(f"{task} holds no image_N.png files; restore them or remove the task")
            if ways is None:
                ways = len(files)
            if sorted(files) != list(range(ways)):
                raise DataError(
                    f"{task} must hold exactly image_0.png .. image_{ways - 1}.png like the other tasks "
                    f"(found {', '.join(f.name for f in sorted(files.values())[:8]) or 'nothing'})")
            images.append(np.stack([decode_image(files[i], str(files[i]), size) for i in range(ways)]))
    count = len(numbers)
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
    """An HW15 answer (or submission) CSV as ``{id: class}``.

    The header must be ``id,class`` (a UTF-8 byte-order mark and spaces are
    allowed), every row two integers ``>= 0``, and the ids ``0 .. rows-1``,
    each once, in any order. Anything else is a DataError naming the file,
    the line and the fix.
    """
    path = Path(path)
    fix = "give an id,class CSV with one row per query, id = task * ways + query"
    answers = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [field.strip() for field in next(reader, [])]
            if header != ["id", "class"]:
                raise DataError(f"{path} must have the header id,class (found {','.join(header) or 'nothing'}); "
                                f"{fix}")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # a blank line
                if len(row) != 2:
                    raise DataError(f"{path}, line {line}: {len(row)} fields, expected id,class; {fix}")
                try:
                    key, value = (int(field.strip()) for field in row)
                except ValueError:
                    raise DataError(f"{path}, line {line}: {','.join(row)[:60]!r} is not two integers; {fix}") from None
                if key < 0 or value < 0:
                    raise DataError(f"{path}, line {line}: id and class must be >= 0 (found {key},{value}); {fix}")
                if key in answers:
                    raise DataError(f"{path}, line {line}: id {key} appears twice; keep one row per id")
                answers[key] = value
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or (str(error).splitlines() or [type(error).__name__])[0][:120]
        raise DataError(f"cannot read answers from {path} ({reason}); {fix}") from None
    missing = sorted(set(range(len(answers))) - set(answers))
    if missing:
        raise DataError(f"{path}: ids must run 0 .. {len(answers) - 1} but {', '.join(map(str, missing[:5]))} "
                        f"{'is' if len(missing) == 1 else 'are'} missing; {fix}")
    return answers


@dataclass
class LakeRuns:
    """Lake's 20 runs as one TaskBatch (queries reordered so that ``query_y`` is sorted)."""

    tasks: TaskBatch
    names: list


_RUN_PREFIX = re.compile(r"^run[0-9]+/")


def lake_member(run: str, name: str) -> str:
    """The archive member a ``class_labels.txt`` path names, always inside ``run``.

    Both forms resolve alike: ``run05/training/class01.png`` and
    ``training/class01.png`` (no ``runNN/`` prefix) are ``run05/training/class01.png``
    in run05 (backslashes and a leading ``./`` are read as ``/`` and nothing).
    """
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return f"{run}/{_RUN_PREFIX.sub('', name, count=1)}"


def read_lake_runs(archive: Path, size: int = DEFAULT_IMAGE_SIZE) -> LakeRuns:
    """Lake's runs from ``all_runs.zip``; every problem is a DataError naming the archive and the run."""
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"Lake's runs not found at {archive}; put all_runs.zip next to the Omniglot archives")
    try:
        with zipfile.ZipFile(archive) as runs:
            names = set(runs.namelist())
            run_names = sorted({n.split("/")[0] for n in names if re.match(r"run\d+/class_labels.txt$", n)})
            support, query = [], []
            for run in run_names:
                labels_file = f"{archive}:{run}/class_labels.txt"
                try:
                    text = runs.read(f"{run}/class_labels.txt").decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise DataError(f"{labels_file} is not UTF-8 text; replace the archive") from None
                pairs = []
                for number, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        fields = line.split()
                        if len(fields) != 2:
                            raise DataError(f"{labels_file}, line {number}: expected 'test/itemNN.png "
                                            f"training/classNN.png', found {line.strip()[:80]!r}; replace the archive")
                        pairs.append((lake_member(run, fields[0]), lake_member(run, fields[1])))
                classes = sorted({train for _, train in pairs})
                index = {name: i for i, name in enumerate(classes)}
                pairs.sort(key=lambda pair: index[pair[1]])
                if not pairs or len(pairs) != len(classes):
                    raise DataError(f"{archive}: {run} does not have one test item per class; replace the archive")
                if support and len(classes) != support[0].shape[0]:
                    raise DataError(f"{archive}: {run} has {len(classes)} classes, {run_names[0]} "
                                    f"{support[0].shape[0]}; every run must be {support[0].shape[0]}-way")

                def image(member):
                    if member not in names:
                        raise DataError(f"{archive}: {run}/class_labels.txt names {member}, which the archive "
                                        f"does not hold; replace the archive")
                    refuse_oversized(runs.getinfo(member).file_size, f"{archive}:{member}")
                    return decode_image(io.BytesIO(runs.read(member)), f"{archive}:{member}", size)

                support.append(np.stack([image(c) for c in classes]))
                query.append(np.stack([image(item) for item, _ in pairs]))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
        raise DataError(f"{archive} is not a readable all_runs.zip ({error}); replace it") from None
    if not run_names:
        raise DataError(f"{archive} holds no runNN/class_labels.txt; replace it with Lake's all_runs.zip")
    ways = support[0].shape[0]
    labels = torch.arange(ways).repeat(len(run_names), 1)
    tasks = TaskBatch(to_float(torch.from_numpy(np.stack(support))), labels,
                      to_float(torch.from_numpy(np.stack(query))), labels.clone(),
                      torch.full((len(run_names), ways), UNKNOWN, dtype=torch.long))
    return LakeRuns(tasks, run_names)


#: ``lake_run_characters`` per process: (archive, its size and time, the Omniglot sources and size) -> ids.
_RUN_CHARACTERS: dict = {}


def _digest(pixels: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).digest()


def lake_run_characters(omniglot, archive: Path) -> frozenset:
    """The global ids of the Omniglot characters that Lake's runs draw, found by their pixels, not their names.

    Every drawing of ``all_runs.zip`` (the 400 one-shot examples and the 400
    test items of the 20 runs) is decoded through the same path as the
    training images (:func:`read_lake_runs`, at ``omniglot``'s image size) and
    matched, by a digest of its ``uint8`` pixels, against every decoded image
    of ``omniglot`` (both sets). With the shipped data all 800 drawings match
    one evaluation-set image each, and they draw 200 characters. A drawing
    whose pixels several characters share (possible at a very small image
    size) counts all of them, so a check built on this errs on the safe side.

    Raises DataError when a drawing matches no image of ``omniglot``: the data
    root then lacks part of the evaluation set (or was decoded by another
    Pillow), and no check could say which characters a model saw. The answer
    is cached per process.
    """
    archive = Path(archive)
    stat = archive.stat() if archive.is_file() else None
    images, labels = omniglot.all_images()
    size = int(images.shape[-1])
    key = (str(archive.resolve()), stat and (stat.st_size, stat.st_mtime_ns), size,
           tuple((str(s.source), s.cache_path and str(s.cache_path), tuple(s.images.shape)) for s in omniglot.sets))
    if key in _RUN_CHARACTERS:
        return _RUN_CHARACTERS[key]
    runs = read_lake_runs(archive, size)
    drawings = torch.cat([runs.tasks.support_x, runs.tasks.query_x], dim=1).flatten(0, 2)
    drawings = drawings.mul(255.0).round().to(torch.uint8).numpy()  # to_float's inverse: the decoded uint8 pixels
    characters_of = {}
    for pixels, character in zip(images.numpy(), labels.tolist()):
        characters_of.setdefault(_digest(pixels), set()).add(character)
    found, unmatched = set(), 0
    for pixels in drawings:
        matches = characters_of.get(_digest(pixels))
        if matches is None:
            unmatched += 1
        else:
            found |= matches
    if unmatched:
        raise DataError(f"{unmatched} of the {len(drawings)} drawings in {archive} match no image of the Omniglot "
                        f"at {omniglot.root}, so no check can tell which characters Lake's runs use; point "
                        f"--data-root at the full Omniglot (images_evaluation included), or clear the decode "
                        f"cache if another Pillow decoded it")
    _RUN_CHARACTERS[key] = frozenset(found)
    return _RUN_CHARACTERS[key]
