"""Ctrl-C and SIGTERM in this process: a stop during the final test says how to finish; before training, abort.

(SIGKILL and Ctrl-C on a real `omnimeta run` subprocess are in tests/test_resume.py.)
"""
import json
import os
import signal
import time

import pytest

from tests.conftest import TINY_CLI, invoke

SAME = ("test_accuracy", "test_ci95", "val_accuracy", "iterations", "best_iteration", "test_tasks")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_the_final_test_says_how_to_finish_and_the_resume_ends_as_the_whole_run(
        signum, tiny_run, tmp_path, data_root, monkeypatch):
    from l2l_omniglot import cli

    out = tmp_path / "run"
    real = cli.ProgressBars.on_eval_progress

    def stop_once(self, done):
        monkeypatch.setattr(cli.ProgressBars, "on_eval_progress", real)
        os.kill(os.getpid(), signum)  # what Ctrl-C or `kill` does, while the first test tasks are scored
        real(self, done)

    monkeypatch.setattr(cli.ProgressBars, "on_eval_progress", stop_once)
    handler = signal.getsignal(signal.SIGTERM)
    result = invoke("run", "--data-root", data_root, "--out", out, *TINY_CLI)
    assert result.exit_code == 128 + signum, result.output
    name = signal.Signals(signum).name
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted by {name} during the final test; training is complete and saved. "
        f"Finish with: omnimeta run --resume {out}")
    assert "Traceback" not in result.output and not (out / "result.json").exists()
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI's handlers are undone
    resumed = invoke("run", "--resume", out, "--json")
    assert resumed.exit_code == 0, resumed.output
    expected = json.loads((tiny_run / "result.json").read_text())
    assert {k: json.loads(resumed.stdout)[k] for k in SAME} == {k: expected[k] for k in SAME}


def test_sigterm_before_training_is_aborted_with_status_143(tmp_path, monkeypatch):
    from l2l_omniglot import cli_options

    def terminated_while_loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once

    monkeypatch.setattr(cli_options, "load_omniglot", terminated_while_loading)
    result = invoke("data", "info", "--data-root", tmp_path)
    assert result.exit_code == 143 and result.stderr.strip() == "Aborted."
