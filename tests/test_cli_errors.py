"""Every bad command line: one line ``Error: ...``, exit status 2, no traceback, no file changed.

One table (``CLI_CASES``): data, options, outputs, run folders, checkpoints and states, each built under the test's
own folder from the real data and a shared tiny run (neither may change).
"""
import json
import shutil

import pytest
import torch

from tests.conftest import REPO, TINY_CLI, invoke, one_line_error, png_header, snapshot

SAMPLE = REPO.parent / "shared" / "omniglot-test-sample" / "Omniglot-test"


class Where:
    """Where a case's files live: ``tmp`` (snapshotted: the case may change nothing there), the data, the trained run.

    Each helper makes what a case needs under ``tmp`` and returns its path.
    """

    def __init__(self, tmp, data_root, trained):
        self.tmp, self.data_root, self.trained = tmp, data_root, trained
        self.run = ["run", "--data-root", data_root, *TINY_CLI]

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
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(name, build, message, tmp_path, data_root, tiny_run):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = build(Where(tmp_path, data_root, tiny_run))
    before, trained_before = snapshot(tmp_path), snapshot(tiny_run)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and message.format(tmp=tmp_path) in lines[0], lines[0]
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert snapshot(tmp_path) == before and snapshot(tiny_run) == trained_before



def test_an_output_that_is_an_input_is_refused_even_with_force(tiny_run, tmp_path):
    answers = tmp_path / "answers.csv"
    answers.write_bytes((SAMPLE.parent / "Omniglot-test-answers.csv").read_bytes())
    before = answers.read_bytes()
    one_line_error(invoke("predict", tiny_run, SAMPLE, "-o", answers, "--answers", answers,
                    "--force"), "is --answers")
    one_line_error(invoke("predict", tiny_run, SAMPLE, "-o", tmp_path / "." / "answers.csv",
                    "--answers", answers, "--force"), "--force does not allow that")
    assert answers.read_bytes() == before
    one_line_error(invoke("compare", "--runs", tiny_run, "--out", tiny_run, "--force"), "is --runs")

