"""Guards against leaks: Lake's runs are found by their pixels; lake20 refuses a model that saw their characters,
and predict warns when a model trained on evaluation-set characters (HW15 folders are drawn from them)."""
import json

import pytest

from l2l_omniglot import load_omniglot, make_split, resolve_config
from l2l_omniglot.data.testsets import lake_run_characters
from l2l_omniglot.errors import ConfigError, DataError
from l2l_omniglot.leaks import check_lake20_clean, evaluation_overlap, seen_characters
from tests.conftest import REPO, TINY, invoke, train_tiny_runs

SAMPLE = REPO.parent / "shared" / "omniglot-test-sample"
SETTINGS = dict(TINY, meta_batch=1, val_tasks=2, eval_tasks=2, test_inner_steps=1)  # the least that visits every phase


@pytest.fixture(scope="module")
def runs(tmp_path_factory, omniglot):
    """Tiny fomaml runs: random split 5-way, lake split 5-way and lake split 20-way."""
    runs = {name: ("fomaml", {"split": split, "ways": ways})
            for name, split, ways in (("random5", "random", 5), ("lake5", "lake", 5), ("lake20", "lake", 20))}
    return train_tiny_runs(tmp_path_factory.mktemp("leaks"), omniglot, runs, **SETTINGS)


def test_lake_runs_draw_200_evaluation_characters_and_the_random_split_saw_141_of_them(omniglot, data_root):
    characters = lake_run_characters(omniglot, data_root / "all_runs.zip")
    assert len(characters) == 200
    first_evaluation = len(omniglot.background.characters)
    assert min(characters) >= first_evaluation  # all drawings of the evaluation set
    random = make_split("random", omniglot)
    assert len(characters & set(random.train)) == 122 and len(characters & set(random.val)) == 19
    assert len(characters & set(random.test)) == 59
    assert not characters & seen_characters(resolve_config("fomaml", split="lake"), omniglot)
    assert len(characters & seen_characters(resolve_config("fomaml", split="vinyals"), omniglot)) == 78
    assert lake_run_characters(omniglot, data_root / "all_runs.zip") is characters  # cached per process


def test_the_guard_checks_characters_not_names(omniglot, data_root, monkeypatch):
    archive = data_root / "all_runs.zip"
    check_lake20_clean(resolve_config("fomaml", split="lake"), omniglot, archive)
    with pytest.raises(ConfigError, match=r"saw 141 of the 200 characters of Lake's runs .*split random"):
        check_lake20_clean(resolve_config("fomaml", split="random"), omniglot, archive)
    # a "lake" split that held one character of the runs in meta-train would be refused too
    import l2l_omniglot.leaks as leaks

    lake = make_split("lake", omniglot)
    leaked = type(lake)("lake", lake.train + (min(lake_run_characters(omniglot, archive)),), lake.val, lake.test)
    monkeypatch.setattr(leaks, "make_split", lambda name, data: leaked)
    with pytest.raises(ConfigError, match=r"saw 1 of the 200 characters .*split lake"):
        check_lake20_clean(resolve_config("fomaml", split="lake"), omniglot, archive)


def test_run_images_missing_from_the_data_are_an_error_not_a_pass(tiny_root, cache_dir, data_root):
    with pytest.raises(DataError, match="800 drawings in .* match no image"):
        lake_run_characters(load_omniglot(tiny_root), data_root / "all_runs.zip")


def test_evaluate_lake20_refuses_a_random_split_model_in_one_line(runs, data_root):
    result = invoke("evaluate", runs["random5"], "--data-root", data_root, "--benchmark", "lake20")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: this model saw 141 of the 200 characters of Lake's runs")
    assert "--split lake" in result.stderr and result.stdout == ""


def test_evaluate_lake20_scores_a_lake_split_20_way_model(runs, data_root):
    result = invoke("evaluate", runs["lake20"], "--data-root", data_root, "--benchmark", "lake20")
    assert result.exit_code == 0, result.stderr
    assert "overall" in result.stdout and "%" in result.stdout and "human" in result.stdout


def test_predict_warns_when_the_model_trained_on_evaluation_characters(runs, data_root, omniglot, tmp_path):
    expected = evaluation_overlap(resolve_config("fomaml", split="random"), omniglot)
    assert expected == sum(1 for c in seen_characters(resolve_config("fomaml", split="random"), omniglot)
                           if c >= len(omniglot.background.characters)) > 0
    result = invoke("predict", runs["random5"], SAMPLE / "Omniglot-test", "-o", tmp_path / "a.csv",
                    "--data-root", data_root, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["evaluation_characters_seen"] == expected
    assert f"trained on {expected} characters of the Omniglot evaluation set" in report["leak_warning"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: {report['leak_warning']}"]
    plain = invoke("predict", runs["random5"], SAMPLE / "Omniglot-test", "-o", tmp_path / "b.csv",
                   "--data-root", data_root)
    assert plain.exit_code == 0 and f"Warning: {report['leak_warning']}" in plain.stderr
    assert "wrote 200 rows" in plain.stdout


def test_predict_with_a_lake_split_model_does_not_warn(runs, data_root, tmp_path):
    result = invoke("predict", runs["lake5"], SAMPLE / "Omniglot-test", "-o", tmp_path / "a.csv",
                    "--data-root", data_root, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["evaluation_characters_seen"] == 0 and report["leak_warning"] is None
    assert "Warning" not in result.stderr
