"""The run folder: what a resume says of files lost or changed, config.json written again, one writer at a time."""
import json
import os
import shutil
import socket

import pytest

from l2l_omniglot.errors import ConfigError
from l2l_omniglot import resolve_config, train_and_evaluate
from tests.conftest import TINY, invoke


def test_resume_says_what_its_run_folder_lost_or_changed_and_keeps_the_state_s_settings(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
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


def test_resume_writes_a_missing_config_json_again(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "config.json").unlink()
    result = invoke("run", "--resume", run)
    assert result.exit_code == 0, result.output
    assert f"Warning: {run}/config.json was missing; written again from the config in state.pt" in result.stderr
    assert json.loads((run / "config.json").read_text()) == json.loads((tiny_run / "config.json").read_text())


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


def test_resume_keeps_unreadable_metrics_lines_in_a_side_file(omniglot, tmp_path):
    from l2l_omniglot.callbacks import RunCallbacks
    from l2l_omniglot.training import Interrupted, resume_training

    class StopAtTwo(RunCallbacks):  # of 4 iterations: an interrupted run
        def on_step(self, iteration, stats, seconds):
            if iteration == 2:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        train_and_evaluate(resolve_config("fomaml", **dict(TINY, iterations=4)), omniglot, out, callbacks=StopAtTwo())
    with open(out / "metrics.jsonl", "a") as metrics:
        metrics.write('{"iteration": 3, "loss": 0.5, "train_acc')  # torn by a kill
    told = []

    class Listen(RunCallbacks):
        def on_warning(self, message):
            told.append(message)

    resume_training(out, omniglot, callbacks=Listen())
    assert (out / "metrics-unreadable.txt").read_text() == '{"iteration": 3, "loss": 0.5, "train_acc\n'
    assert any("kept in" in message and "metrics-unreadable.txt" in message for message in told)
