"""Every bad input: one line, exit status 2, no traceback, no file changed.

Two tables: bad command lines through the CLI (``CLI_CASES``: data, options,
outputs, run folders, checkpoints and states), and bad files through the
library functions that read or write them (``FILE_CASES``). The
CLI is imported only by the tests that use it, so the file table runs on its own.
"""
import builtins
import dataclasses
import errno
import json
import os
import pathlib
import shutil
import signal
import socket
import stat
import struct
import time
import zipfile
import zlib

import numpy as np
import pytest
import torch

from l2l_omniglot.atomic import write_json
from l2l_omniglot.data.omniglot import _read_cache, decode_set, find_source, load_omniglot
from l2l_omniglot.data.testsets import read_answers, read_hw15_folder, read_lake_runs, write_submission
from l2l_omniglot.errors import ConfigError, OmnimetaError
from tests.conftest import REPO, character_png, invoke

TINY = ["--iterations", "2", "--meta-batch", "2", "--queries", "1", "--val-every", "2", "--val-tasks", "3",
        "--eval-tasks", "3", "--device", "cpu", "--test-inner-steps", "3"]
SAMPLE = REPO.parent / "shared" / "omniglot-test-sample" / "Omniglot-test"


def snapshot(folder):
    """Every regular file under ``folder`` with its bytes and permission bits."""
    return {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in sorted(folder.rglob("*")) if p.is_file()}


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds none: enough for Pillow to open it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # one-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def hw15_folder(root, tasks=("0000", "0001"), ways=3):
    """A small HW15 test folder: ``support/`` and ``query/``, ``ways`` drawings per task."""
    for part in ("support", "query"):
        for t, task in enumerate(tasks):
            (root / part / task).mkdir(parents=True)
            for i in range(ways):
                (root / part / task / f"image_{i}.png").write_bytes(character_png(1000 * t + 10 * i, size=28))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = invoke("run", "--data-root", data_root, "--out", out, *TINY)
    assert result.exit_code == 0, result.stderr
    return out


class Where:
    """Where a case's files live: ``tmp`` (snapshotted: the case may change nothing there), the data, the trained run.

    Each helper makes what a case needs under ``tmp`` and returns its path.
    """

    def __init__(self, tmp, data_root, trained):
        self.tmp, self.data_root, self.trained = tmp, data_root, trained
        self.run = ["run", "--data-root", data_root, *TINY]

    def file(self, name="a-file", text="keep me"):
        path = self.tmp / name
        path.write_text(text)
        return path

    def folder(self, name="empty-run"):
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    def data_with(self, *archives, corrupt=False):
        root = self.folder("data")
        for name in archives:
            shutil.copy(self.data_root / name, root)
        if corrupt:
            (root / "images_background.zip").write_bytes(b"PK\x03\x04 not really a zip")
        return root

    def sample_with(self, change):
        folder = self.tmp / "test-folder"
        shutil.copytree(SAMPLE, folder)
        change(folder)
        return folder

    def run_copy(self, change=lambda run: None):
        """A copy of the trained run folder after ``change(folder)``."""
        run = self.tmp / "run-copy"
        shutil.copytree(self.trained, run)
        change(run)
        return run

    def checkpoint_as_state(self):
        run = self.folder("run-state")
        shutil.copy(self.trained / "checkpoint.pt", run / "state.pt")
        return run

    def saved(self, name, change):
        """A run folder holding only ``name`` (state.pt or checkpoint.pt): the trained one's after ``change(payload)``."""
        run = self.folder("run-" + name.split(".")[0])
        payload = torch.load(self.trained / name, weights_only=True)
        torch.save(change(payload) or payload, run / name)
        return run


def _without(*keys, part=None):
    """A payload change that drops ``keys`` (from its ``part``, e.g. "trainer")."""
    def change(payload):
        for key in keys:
            del (payload[part] if part else payload)[key]
    return change


def _setting(key, value, part=None):
    def change(payload):
        if key == "config":  # text as it is; a dict changes settings inside the JSON; anything else as JSON
            payload["config"] = value if isinstance(value, str) else json.dumps(
                dict(json.loads(payload["config"]), **value) if isinstance(value, dict) else value)
        else:
            (payload[part] if part else payload)[key] = value
    return change


def _evil(payload):
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))
    payload["solver"] = Payload()


def _unfitting(payload):
    payload["solver"]["model"] = {"not": torch.zeros(3)}


def _edit(name, text):
    def change(run):
        (run / name).write_text(text)
    return change


def _append(name, text):
    def change(run):
        with open(run / name, "a") as handle:
            handle.write(text)
    return change


def _remove(name):
    return lambda run: (run / name).unlink()


def _hostile_image(folder):
    (folder / "query" / "0003" / "image_2.png").write_bytes(png_header(10000, 10000))  # Pillow only warns


BIG = 2**70
NOT_LOADABLE = "it holds a Python object (print) beyond tensors and plain data, which omnimeta never writes"

#: (name, build(where) -> the command line, the fragment its one line must hold). One table for every bad input
#: that reaches the user through the command line: data, options, outputs, run folders, checkpoints and states.
CLI_CASES = [
    # the data
    ("missing data root", lambda w: ["data", "info", "--data-root", w.tmp / "nowhere"], "does not exist"),
    ("only one set", lambda w: ["data", "info", "--data-root", w.data_with("images_background.zip")],
     "evaluation set not found"),
    ("corrupt zip", lambda w: ["data", "info", "--data-root", w.data_with("images_evaluation.zip", corrupt=True)],
     "images_background.zip is not a readable zip"),
    # options, each with its range
    ("unknown solver", lambda w: w.run + ["--solver", "reptile"], "'reptile' is not one of"),
    ("unknown split", lambda w: w.run + ["--split", "easy"], "'easy' is not one of"),
    ("unknown augment", lambda w: w.run + ["--augment", "flip"], "'flip' is not one of"),
    ("ways", lambda w: w.run + ["--ways", "1"], "--ways must be at least 2"),
    ("shots", lambda w: w.run + ["--shots", "0"], "--shots must be at least 1"),
    ("queries", lambda w: w.run + ["--queries", "0"], "--queries must be at least 1"),
    ("negative lr", lambda w: w.run + ["--meta-lr", "-0.1"], "--meta-lr must be a finite number >= 0"),
    ("nan lr", lambda w: w.run + ["--inner-lr", "nan"],
     "option inner_lr (--inner-lr) of fomaml must be a finite number"),
    ("zero iterations", lambda w: w.run + ["--iterations", "0"], "--iterations must be at least 1"),
    ("zero eval tasks", lambda w: w.run + ["--eval-tasks", "0"], "--eval-tasks must be at least 1"),
    ("seed of 2**70", lambda w: w.run + ["--seed", BIG], "--seed must be between 0 and 2**63 - 1"),
    ("meta-batch of 2**70", lambda w: w.run + ["--meta-batch", BIG], "--meta-batch must be at most 4096"),
    ("iterations of 2**70", lambda w: w.run + ["--iterations", BIG], "--iterations must be at most 1000000000"),
    ("val-every of 2**70", lambda w: w.run + ["--val-every", BIG], "--val-every must be at most 1000000000"),
    ("eval tasks of 2**70", lambda w: w.run + ["--eval-tasks", BIG], "--eval-tasks must be at most 20000"),
    ("inner steps of 2**70", lambda w: w.run + ["--test-inner-steps", BIG], "must be at most 1000"),
    ("evaluate --shots 0", lambda w: ["evaluate", w.trained, "--shots", "0"], "0 is not in the range x>=1"),
    ("evaluate --eval-tasks of 2**70", lambda w: ["evaluate", w.trained, "--eval-tasks", BIG],
     "is not in the range 1<=x<=20000"),
    # an option that the command would ignore, refused before the model is loaded (the folder has none)
    ("evaluate lake20 with --shots", lambda w: ["evaluate", w.folder(), "--benchmark", "lake20", "--shots", "5"],
     "--shots does not apply to lake20 (20 fixed 20-way one-shot runs); drop it"),
    ("cuda without a GPU", lambda w: w.run + ["--device", "cuda", "--out", w.tmp / "cuda-run"], "no usable CUDA GPU"),
    # outputs, checked before any work: these runs have no checkpoint, so a later check would name that instead
    ("out is a file", lambda w: w.run + ["--out", w.file()], "is a file"),
    ("out not writable", lambda w: w.run + ["--out", "/proc/omnimeta-run"], "is not writable"),
    ("predict -o in a missing folder", lambda w: ["predict", w.folder(), SAMPLE, "-o", w.tmp / "nowhere" / "o.csv"],
     "the folder {tmp}/nowhere does not exist; create it or choose another path"),
    ("predict -o is a folder", lambda w: ["predict", w.folder(), SAMPLE, "-o", w.folder("out")],
     "-o {tmp}/out is a folder; give a file path"),
    ("predict -o exists", lambda w: ["predict", w.folder(), SAMPLE, "-o", w.file("o.csv")],
     "-o {tmp}/o.csv exists; choose another path, or add --force to replace it"),
    ("predict -o not writable", lambda w: ["predict", w.folder(), SAMPLE, "-o", "/proc/omnimeta.csv"],
     "-o /proc/omnimeta.csv: cannot write in /proc"),
    ("predict -o under a file", lambda w: ["predict", w.folder(), SAMPLE, "-o", w.file() / "o.csv"],
     "a-file is not a folder"),
    ("compare --out is a file", lambda w: ["compare", "--runs", w.folder(), "--out", w.file()],
     "--out {tmp}/a-file is a file; give a folder path"),
    ("compare --out holds compare.csv", lambda w: ["compare", "--runs", w.folder(), "--out",
                                                   w.file("compare.csv").parent],
     "--out {tmp}/compare.csv exists; choose another path, or add --force"),
    ("compare --out where curves.png is a folder",
     lambda w: ["compare", "--runs", w.folder(), "--out", w.folder("curves.png").parent, "--force"],
     "--out {tmp}/curves.png is a folder"),
    ("compare --out not writable", lambda w: ["compare", "--runs", w.folder(), "--out", "/proc/omnimeta-compare"],
     "--out /proc/omnimeta-compare: cannot write in /proc"),
    # run folders
    ("resume without state", lambda w: ["run", "--resume", w.folder(), "--data-root", w.data_root], "no saved state"),
    ("evaluate without checkpoint", lambda w: ["evaluate", w.folder(), "--data-root", w.data_root],
     "no checkpoint at"),
    ("predict without checkpoint", lambda w: ["predict", w.folder(), SAMPLE, "-o", w.tmp / "o.csv"],
     "no checkpoint at"),
    ("compare a run without metrics.jsonl", lambda w: ["compare", "--runs", w.run_copy(_remove("metrics.jsonl")),
                                                       "--out", w.tmp / "cmp"],
     "run-copy has no metrics.jsonl, which its curves come from; finish the run with `omnimeta run --resume"),
    ("compare a run with a torn metrics line",
     lambda w: ["compare", "--runs", w.run_copy(_append("metrics.jsonl", '{"iteration": 3, "loss": 0.5, "val_ac')),
                "--out", w.tmp / "cmp"], "metrics.jsonl, line 3: not a metrics record"),
    ("compare a run with a damaged result.json",
     lambda w: ["compare", "--runs", w.run_copy(_edit("result.json", '{"test_accuracy": 0.')), "--out", w.tmp / "cmp"],
     "result.json cannot be read"),
    # checkpoints: a valid frame with missing or ill-typed contents
    ("checkpoint without a config", lambda w: ["evaluate", w.saved("checkpoint.pt", _without("config"))],
     "checkpoint.pt is not a checkpoint: config missing or of the wrong type"),
    ("checkpoint with a config that is a list", lambda w: ["evaluate", w.saved("checkpoint.pt", _setting("config", [5]))],
     "holds an unusable config (a run config must be a JSON object (got list))"),
    ("checkpoint with an ill-typed setting",
     lambda w: ["evaluate", w.saved("checkpoint.pt", _setting("config", {"ways": "five"}))],
     "holds an unusable config (--ways must be an int (got 'five'))"),
    ("checkpoint with a config that is not JSON",
     lambda w: ["evaluate", w.saved("checkpoint.pt", _setting("config", "{ways"))], "holds a config that is not JSON"),
    ("checkpoint with a negative class count",
     lambda w: ["evaluate", w.saved("checkpoint.pt", _setting("num_train_classes", -3))],
     "num_train_classes missing or of the wrong type"),
    ("checkpoint whose weights do not fit", lambda w: ["evaluate", w.saved("checkpoint.pt", _unfitting)],
     "does not fit a 5-way fomaml model"),
    ("checkpoint holding pickled code", lambda w: ["evaluate", w.saved("checkpoint.pt", _evil)], NOT_LOADABLE),
    # states: the same, and a trainer part that is missing or ill-typed
    ("a checkpoint where a state is expected", lambda w: ["run", "--resume", w.checkpoint_as_state()],
     "state.pt is a model checkpoint (like checkpoint.pt), not a resumable state"),
    ("state without a config", lambda w: ["run", "--resume", w.saved("state.pt", _without("config"))],
     "state.pt is not a resumable state (state.pt): config missing or of the wrong type"),
    ("state with a config of the wrong type",
     lambda w: ["run", "--resume", w.saved("state.pt", _setting("config", 5))],
     "holds an unusable config (a run config must be a JSON object (got int))"),
    ("state without the trainer's best", lambda w: ["run", "--resume", w.saved("state.pt", _without("best",
                                                                                                    part="trainer"))],
     "state.pt holds an incomplete or damaged state (trainer.best is missing)"),
    ("state with a text iteration",
     lambda w: ["run", "--resume", w.saved("state.pt", _setting("iteration", "2", part="trainer"))],
     "(trainer.iteration is str)"),
    ("state beyond its iterations",
     lambda w: ["run", "--resume", w.saved("state.pt", _setting("iteration", 99, part="trainer"))],
     "(iteration 99 is outside 0 .. 2)"),
    ("state with a data root that is no path",
     lambda w: ["run", "--resume", w.saved("state.pt", _setting("data_root", 5, part="trainer"))],
     "(trainer.data_root is int, not a path)"),
    ("state without random generators",
     lambda w: ["run", "--resume", w.saved("state.pt", _without("rng", part="trainer"))], "(trainer.rng is missing)"),
    ("state whose weights do not fit",
     lambda w: ["run", "--resume", w.saved("state.pt", _unfitting), "--data-root", w.data_root],
     "holds a state that does not fit its 5-way fomaml model"),
    ("state holding pickled code", lambda w: ["run", "--resume", w.saved("state.pt", _evil)], NOT_LOADABLE),
    # HW15 folders (every image failure is in FILE_CASES, through the library)
    ("predict on a wrong layout",
     lambda w: ["predict", w.trained, w.sample_with(lambda f: shutil.rmtree(f / "query" / "0005")), "-o",
                w.tmp / "o.csv", "--data-root", w.data_root], "only one of support/ and query/"),
    ("predict on a non-test folder", lambda w: ["predict", w.trained, w.folder("pictures"), "-o", w.tmp / "o.csv"],
     "is not an HW15 test folder"),
    ("predict on a decompression bomb",
     lambda w: ["predict", w.trained, w.sample_with(_hostile_image), "-o", w.tmp / "o.csv", "--data-root",
                w.data_root], "0003/image_2.png is too large to decode"),
]


@pytest.mark.parametrize("name, build, message", CLI_CASES, ids=[case[0] for case in CLI_CASES])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(name, build, message, tmp_path, data_root, trained):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = build(Where(tmp_path, data_root, trained))
    before, trained_before = snapshot(tmp_path), snapshot(trained)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and message.format(tmp=tmp_path) in lines[0], lines[0]
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert snapshot(tmp_path) == before and snapshot(trained) == trained_before


def test_corrupt_checkpoint_is_one_line_and_runs_no_pickle(tmp_path, data_root, recwarn):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80\x04garbage that is not a checkpoint")
    result = invoke("evaluate", run, "--data-root", data_root)
    assert result.exit_code == 2 and "is not a readable omnimeta checkpoint (its pickled data cannot be read: " \
                                     "Unsupported operand" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "weights_only" not in result.stderr
    assert [str(w.message) for w in recwarn] == []  # PyTorch's warning about the file would be more lines


def test_a_checkpoint_holding_pickled_code_is_refused(tmp_path, capsys):
    from l2l_omniglot.checkpoint import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    torch.save({"format": "omnimeta-checkpoint-v1", "config": "{}", "solver": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="not a readable omnimeta checkpoint") as caught:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(caught.value)
    assert "(print)" in message and len(message.splitlines()) == 1
    # PyTorch's own words would say how to load it anyway, running the code: never passed on
    assert "weights_only" not in message and "can still be loaded" not in message and "\x1b" not in message
    assert "pickle code ran" not in capsys.readouterr().out


def test_a_checkpoint_from_another_solver_or_ways_is_one_line(trained, tmp_path, data_root):
    from l2l_omniglot.checkpoint import load_checkpoint, save_checkpoint

    config, payload = load_checkpoint(trained / "checkpoint.pt")
    tasks_mode = {"mode": "tasks", "inner_lr": 0.4, "test_inner_steps": 10}
    for changes in ({"solver": "transfer", "options": tasks_mode, "ways": 20}, {"ways": 20}):
        run = tmp_path / "-".join(f"{k}{v}" for k, v in changes.items() if k != "options")
        run.mkdir()
        wrong = dataclasses.replace(config, **changes)
        save_checkpoint(run / "checkpoint.pt", wrong, payload["solver"], payload["num_train_classes"])
        result = invoke("evaluate", run, "--data-root", data_root, "--eval-tasks", "3")
        assert result.exit_code == 2, result.output
        assert "does not fit a 20-way" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert json.loads((trained / "result.json").read_text())["iterations"] == 2


# -- Stops, second writers and resumed run folders ---------------------------------------------------------------
# (SIGTERM and a second process on a real `omnimeta run` are in tests/test_resume.py)

SAME = ("test_accuracy", "test_ci95", "val_accuracy", "iterations", "best_iteration", "test_tasks")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_the_final_test_says_how_to_finish_and_the_resume_ends_as_the_whole_run(
        signum, trained, tmp_path, data_root, monkeypatch):
    from l2l_omniglot import cli

    out = tmp_path / "run"
    real = cli.ProgressBars.on_eval_progress

    def stop_once(self, done):
        monkeypatch.setattr(cli.ProgressBars, "on_eval_progress", real)
        os.kill(os.getpid(), signum)  # what Ctrl-C or `kill` does, while the first test tasks are scored
        real(self, done)

    monkeypatch.setattr(cli.ProgressBars, "on_eval_progress", stop_once)
    handler = signal.getsignal(signal.SIGTERM)
    result = invoke("run", "--data-root", data_root, "--out", out, *TINY)
    assert result.exit_code == 128 + signum, result.output
    name = signal.Signals(signum).name
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted by {name} during the final test; training is complete and saved. "
        f"Finish with: omnimeta run --resume {out}")
    assert "Traceback" not in result.output and not (out / "result.json").exists()
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI's handlers are undone
    resumed = invoke("run", "--resume", out, "--json")
    assert resumed.exit_code == 0, resumed.output
    expected = json.loads((trained / "result.json").read_text())
    assert {k: json.loads(resumed.stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}


def test_sigterm_before_training_is_aborted_with_status_143(tmp_path, monkeypatch):
    from l2l_omniglot import cli

    def terminated_while_loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once

    monkeypatch.setattr(cli, "load_omniglot", terminated_while_loading)
    result = invoke("data", "info", "--data-root", tmp_path)
    assert result.exit_code == 143 and result.stderr.strip() == "Aborted."


def test_resume_says_what_its_run_folder_lost_or_changed_and_keeps_the_state_s_settings(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    first, second = (run / "metrics.jsonl").read_text().splitlines()
    # iteration 1 lost, iteration 2 written twice (by two writers, once possible), a line torn by a kill
    (run / "metrics.jsonl").write_text(f"{second}\n{second}\n{{\"iteration\": 3, \"lo")
    edited = json.loads((run / "config.json").read_text())
    meta_lr = edited["meta_lr"]
    edited.update(iterations=50, meta_lr=0.5)
    (run / "config.json").write_text(json.dumps(edited))
    result = invoke("run", "--resume", run, "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert warnings == [
        f"Warning: 1 line(s) of {run}/metrics.jsonl could not be read (torn or edited); they are kept in "
        f"{run}/metrics-unreadable.txt",
        f"Warning: {run}/metrics.jsonl lacks 1 of the 2 iterations trained so far (1; lost or torn lines); they "
        f"cannot be rebuilt without training again, so its curves have a gap there. For complete metrics, start "
        f"the run again with `omnimeta run --out {run} --force`",
        f"Warning: {run}/config.json differs from the state this run resumes (iterations: 50 in config.json, 2 in "
        f"state.pt; meta_lr: 0.5 in config.json, {meta_lr} in state.pt); --resume continues with the settings saved in "
        f"state.pt: config.json is a record of the run, not an input. To train with other settings, start a new "
        f"run with --out"]
    assert (run / "metrics.jsonl").read_text() == second + "\n"  # each iteration once, the torn line set aside
    assert (run / "metrics-unreadable.txt").read_text() == '{"iteration": 3, "lo\n'
    assert json.loads(result.stdout)["iterations"] == 2
    assert json.loads((run / "config.json").read_text()) == edited  # the user's file is theirs: kept


def test_resume_writes_a_missing_config_json_again(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.json").unlink()
    result = invoke("run", "--resume", run)
    assert result.exit_code == 0, result.output
    assert f"Warning: {run}/config.json was missing; written again from the config in state.pt" in result.stderr
    assert json.loads((run / "config.json").read_text()) == json.loads((trained / "config.json").read_text())


def test_one_writer_per_run_folder_and_no_stale_lock(tmp_path):
    from l2l_omniglot.run_folder import LOCK_FILE, RunFolderLock, check_out_dir

    RunFolderLock.check(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()  # checking takes and makes nothing
    (tmp_path / LOCK_FILE).write_text("process 999999 (omnimeta run on a machine long gone)")  # a killed run's
    held = RunFolderLock(tmp_path).acquire()  # no process holds its flock: taken over
    refusal = f"{tmp_path} is in use by process {os.getpid()} (omnimeta run on {socket.gethostname()})"
    for attempt in (lambda: RunFolderLock(tmp_path).acquire(), lambda: RunFolderLock.check(tmp_path),
                    lambda: check_out_dir(tmp_path, force=True)):
        with pytest.raises(ConfigError) as caught:
            attempt()
        assert str(caught.value).startswith(refusal)
    held.release()
    assert not (tmp_path / LOCK_FILE).exists()
    RunFolderLock(tmp_path).acquire().release()


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
