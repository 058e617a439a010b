import json

import pytest

from l2l_omniglot import RunCallbacks, Trainer, resolve_config, resume_training, train_and_evaluate
from l2l_omniglot.callbacks import CallbackList
from l2l_omniglot.run_folder import Interrupted, prepare_out_dir
from l2l_omniglot.training import NumericalError
from l2l_omniglot.errors import ConfigError
from tests.conftest import TINY, StopAtIteration

SETTINGS = dict(TINY, iterations=4, val_tasks=4, eval_tasks=6, test_inner_steps=3)  # two validations, a best one


def metrics(out_dir):
    lines = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
    return lines


def without_times(result):
    """The numbers of a result; times and the process's peak memory (which earlier work in it sets) left out."""
    return {k: v for k, v in result.items()
            if "seconds" not in k and k not in ("iterations_per_second", "peak_rss_mb")}


def test_a_run_writes_every_file_and_an_honest_result(omniglot, tmp_path):
    result = train_and_evaluate(resolve_config("fomaml", **SETTINGS), omniglot, tmp_path / "run")
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result
    assert [m["iteration"] for m in metrics(tmp_path / "run")] == [1, 2, 3, 4]
    assert result["test_tasks"] == 6 and 0.0 <= result["test_accuracy"] <= 1.0
    for key in ("solver", "iterations", "train_seconds", "val_accuracy", "test_accuracy", "test_ci95", "test_tasks"):
        assert key in result


def test_the_same_seed_gives_the_same_numbers(omniglot, tmp_path):
    first = train_and_evaluate(resolve_config("fomaml", seed=5, **SETTINGS), omniglot, tmp_path / "a")
    second = train_and_evaluate(resolve_config("fomaml", seed=5, **SETTINGS), omniglot, tmp_path / "b")
    assert without_times(first) == without_times(second)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    train_and_evaluate(resolve_config("fomaml", seed=6, **SETTINGS), omniglot, tmp_path / "c")
    assert metrics(tmp_path / "c") != metrics(tmp_path / "a")


def test_a_diverging_loss_stops_with_the_iteration_and_the_cause(omniglot, tmp_path):
    config = resolve_config("fomaml", inner_lr=1e38, **SETTINGS)
    with pytest.raises(NumericalError, match=r"iteration 1; the learning rates are likely too high"):
        train_and_evaluate(config, omniglot, tmp_path / "run")


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        prepare_out_dir(tmp_path)
    assert (tmp_path / "result.json").read_text() == "{}"
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare_out_dir(file)


TEST_FIELDS = ("eval_seconds", "test_accuracy", "test_ci95", "test_tasks")


def test_a_run_without_a_test_phase_never_builds_or_scores_test_tasks(omniglot, tmp_path):
    config = resolve_config("fomaml", seed=3, **SETTINGS)
    trainer = Trainer(config, omniglot, tmp_path / "validated", test=False)
    assert trainer.tasks.test_tasks is None and "test" not in trainer.tasks.samplers
    validated = trainer.run()
    assert not any(key in validated for key in TEST_FIELDS)
    assert json.loads((tmp_path / "validated" / "result.json").read_text()) == validated
    # Training and validation are those of a run with a test: the same numbers, less the test's.
    tested = train_and_evaluate(config, omniglot, tmp_path / "tested")
    assert without_times(validated) == {k: v for k, v in without_times(tested).items() if k not in TEST_FIELDS}
    assert metrics(tmp_path / "validated") == metrics(tmp_path / "tested")


def test_the_run_lifecycle_carries_the_choice_of_no_test(data_root, tmp_path):
    from l2l_omniglot import RunRequest, run_training

    config = resolve_config("fomaml", **{**SETTINGS, "iterations": 2})
    result = run_training(RunRequest(tmp_path / "run", config=config, data_root=str(data_root), test=False))
    assert result["val_accuracy"] >= 0 and not any(key in result for key in TEST_FIELDS)


def test_a_callback_stops_a_run_after_its_iteration_and_the_resumed_run_ends_alike(omniglot, tmp_path):
    config = resolve_config("fomaml", seed=4, **SETTINGS)
    with pytest.raises(Interrupted, match=f"at iteration 2; the state is saved. Continue with: omnimeta run "
                                          f"--resume {tmp_path / 'stopped'}"):
        train_and_evaluate(config, omniglot, tmp_path / "stopped", callbacks=StopAtIteration(2))
    assert [m["iteration"] for m in metrics(tmp_path / "stopped")] == [1, 2]
    assert not (tmp_path / "stopped" / ".omnimeta.lock").exists()  # the lock went with the run
    resumed = resume_training(tmp_path / "stopped", omniglot)
    whole = train_and_evaluate(config, omniglot, tmp_path / "whole")
    assert without_times(resumed) == without_times(whole)
    assert metrics(tmp_path / "stopped") == metrics(tmp_path / "whole")


def test_a_run_without_a_folder_writes_nothing_and_a_stop_stays_a_keyboard_interrupt(omniglot, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_config("fomaml", **SETTINGS)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train_and_evaluate(config, omniglot, callbacks=StopAtIteration(1))
    assert not isinstance(stopped.value, Interrupted)
    assert train_and_evaluate(config, omniglot)["test_tasks"] == SETTINGS["eval_tasks"]
    assert list(tmp_path.iterdir()) == []


def test_a_stop_from_one_callback_still_reaches_the_others_then_stops():
    heard = []

    class Recorder(RunCallbacks):
        def on_step(self, iteration, stats, seconds):
            heard.append(iteration)

    with pytest.raises(KeyboardInterrupt):
        CallbackList([StopAtIteration(3), Recorder()]).on_step(3, None, 0.0)
    assert heard == [3]
