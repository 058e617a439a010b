"""Every bad file, through the library function that reads or writes it: one line naming the file and the fix.

One table (``FILE_CASES``): test folders, Lake's runs, answers, archives, a full disk, the decode cache. The CLI
is not imported: these are the library's own messages.
"""
import builtins
import errno
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
import torch

from l2l_omniglot.atomic import write_json
from l2l_omniglot.data.omniglot import _read_cache, decode_set, find_source, load_omniglot
from l2l_omniglot.data.testsets import read_answers, read_hw15_folder, read_lake_runs, write_submission
from l2l_omniglot.errors import OmnimetaError
from tests.conftest import character_png, png_header, snapshot


def hw15_folder(root, tasks=("0000", "0001"), ways=3):
    """A small HW15 test folder: ``support/`` and ``query/``, ``ways`` drawings per task."""
    for part in ("support", "query"):
        for t, task in enumerate(tasks):
            (root / part / task).mkdir(parents=True)
            for i in range(ways):
                (root / part / task / f"image_{i}.png").write_bytes(character_png(1000 * t + 10 * i, size=28))
    return root



# -- Bad files, through the library: one DataError (or WriteError) line naming the file and the fix --------------

REBUILT = "decoded again and the cache replaced"  # the outcome expected of a damaged decode cache


def _hw15_with(request, change):
    """``read_hw15_folder`` on a small folder after ``change(folder, image_0 of task 0000)``."""
    folder = hw15_folder(request.getfixturevalue("tmp_path") / "test")
    change(folder, folder / "support" / "0000" / "image_0.png")
    return lambda: read_hw15_folder(folder)


def _replace_with(data):
    return lambda folder, image: image.write_bytes(data)


def _truncated(folder, image):
    image.write_bytes(character_png(7)[:80])


def _directory(folder, image):
    image.unlink()
    image.mkdir()
    (image / "inside.png").write_bytes(character_png(7, size=28))


def _fifo(folder, image):
    image.unlink()
    os.mkfifo(image)


def _unreadable(request):
    """Root reads any file whatever its mode, so the refusal is simulated where Pillow opens it."""
    folder = hw15_folder(request.getfixturevalue("tmp_path") / "test")
    victim = str(folder / "query" / "0001" / "image_2.png")
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == victim:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), victim)
        return real_open(file, *args, **kwargs)

    request.getfixturevalue("monkeypatch").setattr(builtins, "open", guarded_open)
    return lambda: read_hw15_folder(folder)


def _renamed_tasks(*renames):
    def change(folder, image):
        for old, new in renames:
            for part in ("support", "query"):
                if new is None:
                    shutil.rmtree(folder / part / old)
                elif old is None:
                    shutil.copytree(folder / part / "0000", folder / part / new)
                else:
                    (folder / part / old).rename(folder / part / new)
    return change


def _extra_image(name):
    def change(folder, image):
        shutil.copy(image, image.parent / name)
    return change


def _bomb_in_archive(request):
    root = request.getfixturevalue("tiny_root")
    path = root / "images_background.zip"
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    victim = sorted(members)[3]
    members[victim] = png_header(20000, 20000)  # Pillow raises DecompressionBombError
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    cache_dir = request.getfixturevalue("cache_dir")
    return lambda: load_omniglot(root, cache_dir=cache_dir)


def _lake_runs(request, labels):
    """A two-run, three-way all_runs.zip whose run02/class_labels.txt is ``labels``."""
    path = request.getfixturevalue("tmp_path") / "all_runs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for r, run in enumerate(("run01", "run02")):
            for c in range(1, 4):
                archive.writestr(f"{run}/training/class{c:02d}.png", character_png(100 * r + c, size=28))
                archive.writestr(f"{run}/test/item{c:02d}.png", character_png(100 * r + c + 50, size=28))
            good = "".join(f"{run}/test/item{c:02d}.png {run}/training/class{c:02d}.png\n" for c in range(1, 4))
            archive.writestr(f"{run}/class_labels.txt", labels if run == "run02" else good)
    return lambda: read_lake_runs(path)


def _answers(text):
    def build(request):
        path = request.getfixturevalue("tmp_path") / "answers.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return lambda: read_answers(path)
    return build


def _disk_full(where, existing=True):
    """A write that runs out of space ``where`` ("write": half-way through; "fsync": at the flush)."""
    def build(request):
        tmp, monkeypatch = request.getfixturevalue("tmp_path"), request.getfixturevalue("monkeypatch")
        target = tmp / "submission.csv"
        if existing:
            target.write_text("id,class\n0,1\n")
            target.chmod(0o644)
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if where == "write":
            def half_then_full(self, text, *args, **kwargs):
                with open(self, "w") as handle:
                    handle.write(text[: len(text) // 2])
                raise full
            monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
            return lambda: write_submission(target, torch.tensor([[0, 1, 2], [2, 1, 0]]))

        def no_space(fd):
            raise full
        monkeypatch.setattr(os, "fsync", no_space)
        return lambda: write_json(target, {"rows": 6})
    return build


def _append_fails(request):
    """A log line that the disk has no room for: the earlier lines are kept, and the message says so."""
    log = request.getfixturevalue("tmp_path") / "metrics.jsonl"
    log.write_text('{"iteration": 1}\n')
    real_open = builtins.open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Full(handle) if os.fspath(file) == str(log) and "a" in mode else handle

    request.getfixturevalue("monkeypatch").setattr(builtins, "open", full_open)
    from l2l_omniglot.atomic import append_text
    return lambda: append_text(log, '{"iteration": 2}\n')


def _damaged_cache(tamper):
    """``load_omniglot`` after ``tamper(arrays)`` rewrote the background set's decode cache (None: garbage bytes)."""
    def build(request):
        root, cache_dir = request.getfixturevalue("tiny_root"), request.getfixturevalue("cache_dir")
        load_omniglot(root, cache_dir=cache_dir)
        cache, = (cache_dir / "decoded").glob("background-*.npz")
        if tamper is None:
            cache.write_bytes(b"PK\x03\x04 this is not a cache")
        else:
            with np.load(cache) as stored:
                arrays = tamper({name: stored[name] for name in stored.files})
            with open(cache, "wb") as handle:
                np.savez(handle, **arrays)
        return lambda: load_omniglot(root, cache_dir=cache_dir)
    return build


def _drop_last_character(a):
    keep = a["labels"] < len(a["characters"]) - 1
    return dict(images=a["images"][keep], labels=a["labels"][keep], characters=a["characters"][:-1])


#: (name, build(request) -> the call that meets the bad file, the message fragment expected, or REBUILT)
FILE_CASES = [
    # (b) hostile or broken images in an HW15 folder: one DataError naming the file, decoded no further
    ("decompression bomb error", lambda r: _hw15_with(r, _replace_with(png_header(20000, 20000))),
     "0000/image_0.png is too large to decode, a likely decompression bomb"),
    ("decompression bomb warning", lambda r: _hw15_with(r, _replace_with(png_header(10000, 10000))),
     "0000/image_0.png is too large to decode, a likely decompression bomb"),
    ("huge but legal image", lambda r: _hw15_with(r, _replace_with(png_header(5000, 5000))),
     "0000/image_0.png is too large to decode (5000x5000 pixels, above 4096x4096)"),
    ("truncated png", lambda r: _hw15_with(r, _truncated), "0000/image_0.png cannot be decoded"),
    ("not an image", lambda r: _hw15_with(r, _replace_with(b"id,class\n0,1\n")),
     "0000/image_0.png cannot be decoded (cannot identify image file"),
    ("directory named like an image", lambda r: _hw15_with(r, _directory), "0000/image_0.png is a directory"),
    ("fifo named like an image", lambda r: _hw15_with(r, _fifo), "0000/image_0.png is not a regular file"),
    ("unreadable image", _unreadable, "0001/image_2.png cannot be read (Permission denied)"),
    ("bomb inside an archive", _bomb_in_archive,
     "images_background.zip is too large to decode, a likely decompression bomb"),
    # (d) task and image numbering
    ("task names that are not numbers", lambda r: _hw15_with(r, _renamed_tasks(("0001", "task-b"))),
     "task-b is not named like NNNN (a task number)"),
    ("two task names with one number", lambda r: _hw15_with(r, _renamed_tasks((None, "1"), ("0001", "01"))),
     "01 and 1 are both task 1"),
    ("a gap in the task numbers", lambda r: _hw15_with(r, _renamed_tasks((None, "0003"))),
     "0002 is missing, which would shift the submission ids"),
    ("two image names with one number", lambda r: _hw15_with(r, _extra_image("image_01.png")),
     "image_01.png and image_1.png are both image 1"),
    ("a stray file among the images", lambda r: _hw15_with(r, _extra_image("notes.txt")),
     "0000/notes.txt is not named like image_N.png"),
    # (e) Lake's runs
    ("lake labels with a one-field line",
     lambda r: _lake_runs(r, "test/item01.png training/class01.png\ntest/item02.png\n"),
     "run02/class_labels.txt, line 2: expected"),
    ("lake labels naming a missing image",
     lambda r: _lake_runs(r, "".join(f"test/item{c:02d}.png training/class{c + 1:02d}.png\n" for c in range(1, 4))),
     "names run02/training/class04.png, which the archive does not hold"),
    # answer CSVs
    ("answers with a non-integer id", _answers("id,class\n0,1\nsix,2\n"), "line 3: 'six,2' is not two integers"),
    ("answers with a duplicate id", _answers("id,class\n0,1\n1,2\n0,3\n"), "line 4: id 0 appears twice"),
    ("answers with a missing field", _answers("id,class\n0,1\n1\n"), "line 3: 1 fields, expected id,class"),
    ("answers with a gap in the ids", _answers("id,class\n0,1\n2,2\n"), "ids must run 0 .. 1 but 1 is missing"),
    ("answers with a negative class", _answers("id,class\n0,-1\n"), "id and class must be >= 0"),
    ("answers with a wrong header", _answers("image,label\n0,1\n"), "must have the header id,class"),
    ("answers with a NUL byte", _answers(b"id,class\n0,\x001\n"), "line 2: '0,\\x001' is not two integers"),
    ("answers not in UTF-8", _answers(b"id,class\n0,\xff\n"), "cannot read answers from"),
    # (a) writes that fail: the previous file kept whole, with its mode, and no temporary left
    ("disk full while writing", _disk_full("write"),
     "submission.csv (No space left on device); the previous submission.csv is kept; free space"),
    ("disk full at the flush", _disk_full("fsync"),
     "submission.csv (No space left on device); the previous submission.csv is kept"),
    ("disk full on a new file", _disk_full("write", existing=False),
     "submission.csv (No space left on device); no submission.csv was written"),
    ("disk full while appending to a log", _append_fails,
     "could not append to {tmp}/metrics.jsonl (No space left on device); its earlier lines are kept; free space"),
    # (c) a decode cache whose arrays disagree: decoded again, never trusted
    ("cache that is not a zip", _damaged_cache(None), REBUILT),
    ("cache with fewer labels than images", _damaged_cache(lambda a: dict(a, labels=a["labels"][:-1])), REBUILT),
    ("cache with labels out of range", _damaged_cache(lambda a: dict(a, labels=a["labels"] + 1)), REBUILT),
    ("cache with images of the wrong size",
     _damaged_cache(lambda a: dict(a, images=np.ascontiguousarray(a["images"][:, :20, :20]))), REBUILT),
    ("cache with images of the wrong dtype", _damaged_cache(lambda a: dict(a, images=a["images"].astype(np.float32))),
     REBUILT),
    ("cache with unsorted characters", _damaged_cache(lambda a: dict(a, characters=a["characters"][::-1])), REBUILT),
    ("cache that disagrees with its source", _damaged_cache(_drop_last_character), REBUILT),
    ("cache without its labels", _damaged_cache(lambda a: dict(images=a["images"], characters=a["characters"])),
     REBUILT),
    ("cache holding pickled objects",
     _damaged_cache(lambda a: dict(a, characters=np.array(list(a["characters"]), dtype=object))), REBUILT),
]


@pytest.mark.parametrize("name, build, expected", FILE_CASES, ids=[case[0] for case in FILE_CASES])
def test_a_bad_file_is_one_line_and_loses_nothing(name, build, expected, request, tmp_path, recwarn):
    call = build(request)
    before = snapshot(tmp_path)
    if expected is REBUILT:
        rebuilt = call().background
        root = request.getfixturevalue("tiny_root")
        fresh = decode_set(find_source(root, "background"), "background")
        assert torch.equal(rebuilt.images, fresh.images) and torch.equal(rebuilt.labels, fresh.labels)
        assert rebuilt.characters == fresh.characters
        changed = {path for path in {*before, *snapshot(tmp_path)} if before.get(path) != snapshot(tmp_path).get(path)}
        assert changed == {rebuilt.cache_path}  # the damaged cache was replaced, nothing else touched
        assert _read_cache(rebuilt.cache_path, "background", rebuilt.source) is not None
    else:
        with pytest.raises(OmnimetaError) as caught:
            call()
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and expected.format(tmp=tmp_path) in message, message
        assert snapshot(tmp_path) == before
    assert [str(w.message) for w in recwarn] == []  # nothing else reaches the user's terminal
