"""Kill a real `omnimeta run` with SIGKILL at a random moment, resume it, and get the same numbers."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

BUDGET = ["--solver", "fomaml", "--iterations", "24", "--meta-batch", "4", "--queries", "1", "--val-every", "6",
          "--val-tasks", "10", "--eval-tasks", "30", "--checkpoint-every", "4", "--device", "cpu", "--seed", "3",
          "--test-inner-steps", "3"]
SAME = ("test_accuracy", "test_ci95", "val_accuracy", "iterations", "best_iteration", "test_tasks")


def omnimeta(*args, data_root):
    env = dict(os.environ, OMNIMETA_DATA=str(data_root))
    return subprocess.Popen([sys.executable, "-m", "l2l_omniglot", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def losses(run_dir):
    return [(m["iteration"], m["loss"], m.get("val_accuracy"))
            for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    process = omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    started = wait_for_first_state(out, process)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return out, time.monotonic() - started


def wait_for_first_state(out, process) -> float:
    """When the run's first state.pt appeared: from then on a killed run has something to resume."""
    deadline = time.monotonic() + 120
    while not (out / "state.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run never saved its state"
        time.sleep(0.01)
    return time.monotonic()


def test_sigkill_at_a_random_moment_then_resume_gives_identical_results(uninterrupted, data_root, tmp_path):
    whole, seconds = uninterrupted
    # A moment of the run itself: start-up (imports, data loading) before the first state.pt varies with the
    # machine's load, and a run killed then has nothing to resume (`--resume` says so; tested elsewhere).
    moment = random.Random().uniform(0.0, 0.9) * seconds
    out = tmp_path / "run"
    process = omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    wait_for_first_state(out, process)
    time.sleep(moment)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = omnimeta("run", "--resume", out, data_root=data_root)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, f"killed after {moment:.1f} s; resume failed: {stderr}"
    expected = json.loads((whole / "result.json").read_text())
    got = json.loads((out / "result.json").read_text())
    assert {k: got[k] for k in SAME} == {k: expected[k] for k in SAME}, f"killed after {moment:.1f} s"
    assert losses(out) == losses(whole)
    assert [m[0] for m in losses(out)] == list(range(1, 25))


def test_ctrl_c_saves_the_state_and_says_how_to_resume(uninterrupted, data_root, tmp_path):
    whole, _ = uninterrupted
    out = tmp_path / "run"
    process = omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or len(losses(out)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"omnimeta run --resume {out}" in stderr
    assert "Traceback" not in stderr
    resumed = omnimeta("run", "--resume", out, "--json", data_root=data_root)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    expected = json.loads((whole / "result.json").read_text())
    assert {k: json.loads(stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}


def test_resume_on_a_folder_without_state_is_one_line_and_exit_2(data_root, tmp_path):
    process = omnimeta("run", "--resume", tmp_path, data_root=data_root)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.strip().count("\n") == 0 and "no saved state" in stderr
