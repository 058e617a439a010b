import json

import pytest

from l2l_omniglot import resolve_config, train_and_evaluate
from l2l_omniglot.training import NumericalError, prepare_out_dir
from l2l_omniglot.errors import ConfigError

TINY = dict(iterations=4, meta_batch=2, queries=1, val_every=2, val_tasks=4, eval_tasks=6, device="cpu", test_inner_steps=3)


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
    result = train_and_evaluate(resolve_config("fomaml", **TINY), omniglot, tmp_path / "run")
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result
    assert [m["iteration"] for m in metrics(tmp_path / "run")] == [1, 2, 3, 4]
    assert result["test_tasks"] == 6 and 0.0 <= result["test_accuracy"] <= 1.0
    for key in ("solver", "iterations", "train_seconds", "val_accuracy", "test_accuracy", "test_ci95", "test_tasks"):
        assert key in result


def test_the_same_seed_gives_the_same_numbers(omniglot, tmp_path):
    first = train_and_evaluate(resolve_config("fomaml", seed=5, **TINY), omniglot, tmp_path / "a")
    second = train_and_evaluate(resolve_config("fomaml", seed=5, **TINY), omniglot, tmp_path / "b")
    assert without_times(first) == without_times(second)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    train_and_evaluate(resolve_config("fomaml", seed=6, **TINY), omniglot, tmp_path / "c")
    assert metrics(tmp_path / "c") != metrics(tmp_path / "a")


def test_a_diverging_loss_stops_with_the_iteration_and_the_cause(omniglot, tmp_path):
    config = resolve_config("fomaml", inner_lr=1e38, **TINY)
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
