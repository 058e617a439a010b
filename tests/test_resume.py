"""Stop a real `omnimeta run` (SIGKILL at a random moment, Ctrl-C, SIGTERM), resume it, get the same numbers; one writer per run folder."""
import json
import os
import random
import signal
import socket
import time

import pytest

from tests.conftest import REPO, start_omnimeta

pytestmark = pytest.mark.slow  # every test here runs `omnimeta` in a subprocess

BUDGET = ["--solver", "fomaml", "--iterations", "24", "--meta-batch", "4", "--queries", "1", "--val-every", "6",
          "--val-tasks", "10", "--eval-tasks", "30", "--checkpoint-every", "4", "--device", "cpu", "--seed", "3",
          "--test-inner-steps", "3", "--train-inner-steps", "1"]  # one inner step: the mechanics, at a third the cost
SAME = ("test_accuracy", "test_ci95", "val_accuracy", "iterations", "best_iteration", "test_tasks")


def losses(run_dir):
    return [(m["iteration"], m["loss"], m.get("val_accuracy"))
            for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    process = start_omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    started = wait_for_first_state(out, process)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return out, time.monotonic() - started


def wait_for_first_state(out, process) -> float:
    """When the run's first state.pt appeared: from then on a killed run has something to resume."""
    while not (out / "state.pt").exists():  # a hang is pytest-timeout's to catch
        assert process.poll() is None, f"the run ended before it saved its state: {process.communicate()[1]}"
        time.sleep(0.01)
    return time.monotonic()


def test_sigkill_at_a_random_moment_then_resume_gives_identical_results(uninterrupted, data_root, tmp_path):
    whole, seconds = uninterrupted
    # A moment of the run itself: start-up (imports, data loading) before the first state.pt varies with the
    # machine's load, and a run killed then has nothing to resume (`--resume` says so; tested elsewhere).
    moment = random.Random().uniform(0.0, 0.9) * seconds
    out = tmp_path / "run"
    process = start_omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    wait_for_first_state(out, process)
    time.sleep(moment)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = start_omnimeta("run", "--resume", out, data_root=data_root)
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
    process = start_omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    while not (out / "metrics.jsonl").exists() or len(losses(out)) < 3:  # a hang is pytest-timeout's to catch
        assert process.poll() is None, f"the run ended before it was signalled: {process.communicate()[1]}"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"omnimeta run --resume {out}" in stderr
    assert "Traceback" not in stderr
    resumed = start_omnimeta("run", "--resume", out, "--json", data_root=data_root)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    expected = json.loads((whole / "result.json").read_text())
    assert {k: json.loads(stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}


def test_resume_on_a_folder_without_state_is_one_line_and_exit_2(data_root, tmp_path):
    process = start_omnimeta("run", "--resume", tmp_path, data_root=data_root)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.strip().count("\n") == 0 and "no saved state" in stderr


def wait_for_lines(out, process, count: int) -> None:
    """Until the run has logged ``count`` iterations (it must still be running)."""
    while not (out / "metrics.jsonl").exists() or len(whole_lines(out)) < count:  # a hang: pytest-timeout's
        assert process.poll() is None, "the run ended before it was signalled"
        time.sleep(0.05)


def whole_lines(run_dir):
    """The complete lines of metrics.jsonl (a line being written has no newline yet)."""
    text = (run_dir / "metrics.jsonl").read_text()
    return text.splitlines()[:text.count("\n")]


def test_sigterm_saves_the_state_and_the_resume_needs_no_data_root_and_ends_as_the_whole_run(
        uninterrupted, data_root, tmp_path):
    """SIGTERM (timeout, Docker, Slurm) is Ctrl-C: state saved, the resume hint, status 143. The run was started
    with a relative --data-root and no $OMNIMETA_DATA; --resume from another folder finds the data on its own."""
    whole, _ = uninterrupted
    out = tmp_path / "run"
    nowhere = dict(OMNIMETA_DATA=str(tmp_path / "no-data-here"))
    started = tmp_path / "elsewhere"
    started.mkdir()
    relative = os.path.relpath(data_root, started)
    process = start_omnimeta("run", *BUDGET, "--out", out, "--data-root", relative, cwd=started,
                             env=dict(nowhere, PYTHONPATH=str(REPO)))
    wait_for_lines(out, process, 3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    iteration = torch_state_iteration(out)
    assert stderr.strip().splitlines()[-1] == (f"interrupted by SIGTERM at iteration {iteration}; the state is saved. "
                                               f"Continue with: omnimeta run --resume {out}")
    assert [json.loads(line)["iteration"] for line in whole_lines(out)] == list(range(1, iteration + 1))
    resumed = start_omnimeta("run", "--resume", out, "--json", env=nowhere)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert "Warning" not in stderr  # metrics.jsonl and config.json match the state: nothing to say
    expected = json.loads((whole / "result.json").read_text())
    assert {k: json.loads(stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}
    assert losses(out) == losses(whole)


def torch_state_iteration(run_dir) -> int:
    import torch

    return torch.load(run_dir / "state.pt", weights_only=True)["trainer"]["iteration"]


def test_a_second_writer_is_refused_at_once_naming_the_first_and_the_metrics_stay_single(data_root, tmp_path):
    """Two processes on one run folder: the second (--resume, or --out --force) exits 2 while the first still works,
    naming it; the first goes on untouched, and metrics.jsonl holds every iteration once."""
    out = tmp_path / "run"
    long_budget = [*BUDGET[:BUDGET.index("--iterations")], "--iterations", "100000",
                   *BUDGET[BUDGET.index("--iterations") + 2:], "--checkpoint-every", "1"]
    first = start_omnimeta("run", *long_budget, "--out", out, data_root=data_root)
    wait_for_lines(out, first, 2)
    seconds = [start_omnimeta("run", "--resume", out, data_root=data_root),
               start_omnimeta("run", "--out", out, "--force", "--iterations", "2", "--eval-tasks", "3", data_root=data_root)]
    for second in seconds:
        _, stderr = second.communicate(timeout=300)
        assert second.returncode == 2, stderr
        (line,) = stderr.strip().splitlines()
        assert line == (f"Error: {out} is in use by process {first.pid} (omnimeta run on {socket.gethostname()}); "
                        f"wait for that run to end or stop it, then retry")
    assert first.poll() is None, "the refusal came only after the first run ended"
    logged = len(whole_lines(out))
    wait_for_lines(out, first, logged + 2)  # the first run goes on, its files untouched by the refused ones
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr
    iterations = [json.loads(line)["iteration"] for line in whole_lines(out)]
    assert iterations == list(range(1, len(iterations) + 1)) and len(iterations) >= logged + 2
    assert not (out / ".omnimeta.lock").exists()  # a run that ends removes its lock file


def test_sighup_saves_the_state_and_the_resume_ends_as_the_whole_run(uninterrupted, data_root, tmp_path):
    """SIGHUP (the terminal or the ssh session closed) is Ctrl-C too: state saved, the resume hint, status 129."""
    whole, _ = uninterrupted
    out = tmp_path / "run"
    process = start_omnimeta("run", *BUDGET, "--out", out, data_root=data_root)
    wait_for_lines(out, process, 3)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGHUP, stderr
    assert "Traceback" not in stderr
    iteration = torch_state_iteration(out)
    assert stderr.strip().splitlines()[-1] == (f"interrupted by SIGHUP at iteration {iteration}; the state is saved. "
                                               f"Continue with: omnimeta run --resume {out}")
    resumed = start_omnimeta("run", "--resume", out, "--json", data_root=data_root)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    expected = json.loads((whole / "result.json").read_text())
    assert {k: json.loads(stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}
    assert losses(out) == losses(whole)
