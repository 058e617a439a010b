"""The CLI end to end: real commands on real Omniglot, through click's test runner."""
import gc
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY, TINY_CLI, cli_options, invoke, one_line_error

#: A run whose numbers tell its settings apart (3 iterations, 4 validation tasks, 5 test tasks).
SETTINGS_CLI = cli_options(dict(TINY, iterations=3, val_every=3, val_tasks=4, eval_tasks=5, test_inner_steps=3))


def test_data_info_json_reports_the_published_counts(data_root):
    result = invoke("data", "info", "--data-root", data_root, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["background"] == {"alphabets": 30, "characters": 964, "images": 19280}
    assert info["evaluation"] == {"alphabets": 20, "characters": 659, "images": 13180}
    assert info["splits"]["lake"] == {"train": 768, "val": 196, "test": 659}
    assert info["splits"]["random"] == {"train": 1100, "val": 100, "test": 423}
    assert "load_seconds" in info  # reported for the user; timings belong in bench/, not in tests


def test_run_writes_a_run_folder_and_prints_json(data_root, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--solver", "fomaml", "--data-root", data_root, "--out", out, "--json", *SETTINGS_CLI)
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((out / "result.json").read_text())
    assert printed["iterations"] == 3 and printed["test_tasks"] == 5
    files = sorted(p.name for p in out.iterdir())
    events = [name for name in files if name.startswith("events.out.tfevents.")]  # TensorBoard's (the dev extra)
    assert len(events) == 1
    assert [name for name in files if name not in events] == ["checkpoint.pt", "config.json", "metrics.jsonl",
                                                              "result.json", "state.pt"]


def test_run_prints_a_result_table(data_root, tmp_path):
    result = invoke("run", "--solver", "transfer", "--data-root", data_root, "--out", tmp_path / "t", *SETTINGS_CLI)
    assert result.exit_code == 0, result.stderr
    assert "test acc" in result.stdout and "transfer" in result.stdout and "±" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["run", "--ways", "1"], "--ways must be at least 2"),
    (["run", "--ways", "700"], "--ways 700 exceeds the"),
    (["run", "--shots", "0"], "--shots must be at least 1"),
    (["run", "--shots", "10", "--queries", "11"], "--shots + --queries must be at most 20"),
    (["run", "--split", "easy"], "'easy' is not one of 'lake', 'random'"),
    (["run", "--solver", "reptile"], "'reptile' is not one of"),
    (["run", "--augment", "flip"], "'flip' is not one of"),
    (["run", "--meta-lr", "-1"], "--meta-lr must be a finite number >= 0"),
    (["run", "--inner-lr", "nan"], "option inner_lr (--inner-lr) of fomaml must be a finite number"),
    (["run", "--iterations", "0"], "--iterations must be at least 1"),
    (["run", "--eval-tasks", "0"], "--eval-tasks must be at least 1"),
    (["data", "info", "--data-root", "/nonexistent/omniglot"], "/nonexistent/omniglot does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, data_root, tmp_path):
    if args[0] == "run":
        args = args + ["--data-root", str(data_root), "--out", str(tmp_path / "run")]
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert message in lines[0]
    assert not (tmp_path / "run").exists()


def test_out_that_holds_a_run_is_refused_and_kept(data_root, tmp_path):
    (tmp_path / "result.json").write_text('{"mine": 1}')
    result = invoke("run", "--data-root", data_root, "--out", tmp_path, *SETTINGS_CLI)
    assert result.exit_code == 2 and "already holds a run" in result.stderr
    assert (tmp_path / "result.json").read_text() == '{"mine": 1}'


@pytest.mark.parametrize("command", [[], ["run"], ["data"], ["data", "info"], ["tune"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_the_entry_point_hides_what_the_imports_made_from_the_garbage_collector():
    """l2l_omniglot.process: what torch and learn2learn leave is frozen before the command runs, so that no
    collection walks it again (the one at exit cost every command 0.9 s)."""
    from l2l_omniglot.cli import main

    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as finished:
            main(["--help"])
        assert finished.value.code == 0
        assert gc.get_freeze_count() > 100_000  # torch alone leaves several hundred thousand objects
    finally:
        gc.unfreeze()


def test_the_checkout_shim_and_the_module_run_the_same_app(data_root):
    for launcher in (["cli.py"], ["-m", "l2l_omniglot"]):
        done = subprocess.run([sys.executable, *launcher, "data", "info", "--data-root", str(data_root), "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["evaluation"]["images"] == 13180
        assert "Gym" not in done.stderr  # learn2learn's gym import notice is kept out


def test_an_option_given_twice_is_refused(data_root, tmp_path):
    one_line_error(invoke("run", "--solver", "fomaml", "--option", "inner_lr=0.1", "--option", "inner_lr=0.2",
                    "--data-root", data_root, "--out", tmp_path / "a", *TINY_CLI), "inner_lr is given twice")
    one_line_error(invoke("run", "--solver", "fomaml", "--inner-lr", "0.1", "--option", "inner_lr=0.2",
                    "--data-root", data_root, "--out", tmp_path / "b", *TINY_CLI), "inner_lr of fomaml is given twice")
