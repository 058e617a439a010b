"""Every bad input: one line, exit status 2, no traceback, no file changed."""
import dataclasses
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from l2l_omniglot.checkpoint import load_checkpoint, save_checkpoint
from l2l_omniglot.cli import cli
from l2l_omniglot.errors import ConfigError
from tests.conftest import REPO

TINY = ["--iterations", "2", "--meta-batch", "2", "--queries", "1", "--val-every", "2", "--val-tasks", "3",
        "--eval-tasks", "3", "--device", "cpu", "--test-inner-steps", "3"]
SAMPLE = REPO.parent / "shared" / "omniglot-test-sample" / "Omniglot-test"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = invoke("run", "--data-root", data_root, "--out", out, *TINY)
    assert result.exit_code == 0, result.stderr
    return out


def cases(tmp, data_root, trained):
    """(name, arguments) for each bad input; the files they may touch live under ``tmp``."""
    one_set = tmp / "one-set"
    one_set.mkdir()
    shutil.copy(data_root / "images_background.zip", one_set)
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "images_background.zip").write_bytes(b"PK\x03\x04 not really a zip")
    shutil.copy(data_root / "images_evaluation.zip", corrupt)
    a_file = tmp / "a-file"
    a_file.write_text("keep me")
    empty = tmp / "empty-run"
    empty.mkdir()
    bad_layout = tmp / "bad-layout"
    shutil.copytree(SAMPLE, bad_layout)
    shutil.rmtree(bad_layout / "query" / "0005")
    run = ["run", "--data-root", data_root, *TINY]
    return [
        ("missing data root", ["data", "info", "--data-root", tmp / "nowhere"], "does not exist"),
        ("only one set", ["data", "info", "--data-root", one_set], "evaluation set not found"),
        ("corrupt zip", ["data", "info", "--data-root", corrupt], "images_background.zip is not a readable zip"),
        ("unknown solver", run + ["--solver", "reptile"], "'reptile' is not one of"),
        ("unknown split", run + ["--split", "easy"], "'easy' is not one of"),
        ("unknown augment", run + ["--augment", "flip"], "'flip' is not one of"),
        ("ways", run + ["--ways", "1"], "--ways must be at least 2"),
        ("shots", run + ["--shots", "0"], "--shots must be at least 1"),
        ("queries", run + ["--queries", "0"], "--queries must be at least 1"),
        ("negative lr", run + ["--meta-lr", "-0.1"], "--meta-lr must be a finite number >= 0"),
        ("nan lr", run + ["--inner-lr", "nan"], "--inner-lr must be a finite number >= 0"),
        ("zero iterations", run + ["--iterations", "0"], "--iterations must be at least 1"),
        ("zero eval tasks", run + ["--eval-tasks", "0"], "--eval-tasks must be at least 1"),
        ("out is a file", run + ["--out", a_file], "is a file"),
        ("out not writable", run + ["--out", "/proc/omnimeta-run"], "is not writable"),
        ("resume without state", ["run", "--resume", empty, "--data-root", data_root], "no saved state"),
        ("evaluate without checkpoint", ["evaluate", empty, "--data-root", data_root], "no checkpoint at"),
        ("predict without checkpoint", ["predict", empty, SAMPLE, "-o", tmp / "o.csv"], "no checkpoint at"),
        ("predict on a wrong layout", ["predict", trained, bad_layout, "-o", tmp / "o.csv", "--data-root", data_root],
         "only one of support/ and query/"),
        ("predict on a non-test folder", ["predict", trained, tmp, "-o", tmp / "o.csv"], "is not an HW15 test folder"),
        ("cuda without a GPU", run + ["--device", "cuda", "--out", tmp / "cuda-run"], "no usable CUDA GPU"),
    ]


CASE_NAMES = [
    "missing data root", "only one set", "corrupt zip", "unknown solver", "unknown split", "unknown augment", "ways",
    "shots", "queries", "negative lr", "nan lr", "zero iterations", "zero eval tasks", "out is a file",
    "out not writable", "resume without state", "evaluate without checkpoint", "predict without checkpoint",
    "predict on a wrong layout", "predict on a non-test folder", "cuda without a GPU"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(name, tmp_path, data_root, trained):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (_, args, message), = [c for c in cases(tmp_path, data_root, trained) if c[0] == name]
    before, trained_before = snapshot(tmp_path), snapshot(trained)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before and snapshot(trained) == trained_before


def test_corrupt_checkpoint_is_one_line_and_runs_no_pickle(tmp_path, data_root):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80\x04garbage that is not a checkpoint")
    result = invoke("evaluate", run, "--data-root", data_root)
    assert result.exit_code == 2 and "is not a readable omnimeta checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_holding_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    torch.save({"format": "omnimeta-checkpoint-v1", "config": "{}", "solver": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="not a readable omnimeta checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_a_checkpoint_from_another_solver_or_ways_is_one_line(trained, tmp_path, data_root):
    config, payload = load_checkpoint(trained / "checkpoint.pt")
    for changes in ({"solver": "transfer", "transfer_mode": "tasks", "ways": 20}, {"ways": 20}):
        run = tmp_path / "-".join(f"{k}{v}" for k, v in changes.items())
        run.mkdir()
        wrong = dataclasses.replace(config, **changes)
        save_checkpoint(run / "checkpoint.pt", wrong, payload["solver"])
        result = invoke("evaluate", run, "--data-root", data_root, "--eval-tasks", "3")
        assert result.exit_code == 2, result.output
        assert "does not fit a 20-way" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert json.loads((trained / "result.json").read_text())["iterations"] == 2
