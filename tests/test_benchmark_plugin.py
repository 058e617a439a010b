"""A benchmark from another package: installed with pip, listed by `omnimeta benchmarks`, scored by `evaluate`.

The example package of docs/examples/alphabet_benchmark is pip-installed into this environment (offline:
--no-deps --no-build-isolation) and driven from the command line only, as a user would.
"""
import json

import pytest

from tests.conftest import TINY, ok, omnimeta, one_line_error, pip, pip_installed, train_tiny_runs

SETTINGS = dict(TINY, iterations=4, val_tasks=4, eval_tasks=8)  # two validations, enough tasks to score


@pytest.fixture
def installed_benchmark(tmp_path):
    with pip_installed("alphabet_benchmark", "omnimeta-alphabet", tmp_path):
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, omniglot):
    return train_tiny_runs(tmp_path_factory.mktemp("alphabet"), omniglot,
                           {"lake": ("protonet", {}), "random": ("protonet", {"split": "random"})}, **SETTINGS)


@pytest.mark.slow
def test_an_installed_benchmark_is_listed_and_scores_a_run_from_the_command_line(installed_benchmark, runs,
                                                                                  data_root):
    listed = {row["name"]: row for row in json.loads(ok(omnimeta("benchmarks", "--json", data_root=data_root)))}
    assert listed["alphabet"]["package"] == "omnimeta-alphabet"
    assert [o["name"] for o in listed["alphabet"]["options"]] == ["alphabet", "tasks", "ways", "shots"]
    assert {"tasks", "lake20", "hw15"} <= set(listed)
    assert "alphabet" in ok(omnimeta("evaluate", "--help", data_root=data_root))

    def evaluate(run, *options):
        return omnimeta("evaluate", run, "--benchmark", "alphabet", "--option", "tasks=6", *options,
                        data_root=data_root)

    report = json.loads(ok(evaluate(runs["lake"], "--json")))
    assert report["benchmark"] == "alphabet" and report["alphabet"] == "Tengwar"
    assert (report["test_tasks"], report["ways"], report["shots"]) == (6, 5, 1)
    assert 0.0 <= report["test_accuracy"] <= 1.0
    wider = json.loads(ok(evaluate(runs["lake"], "--option", "alphabet=Kannada", "--ways", "10", "--json")))
    assert (wider["alphabet"], wider["ways"]) == ("Kannada", 10)
    assert "tasks of alphabet" in ok(evaluate(runs["lake"]))

    # The characters guard: a random-split model met some of Tengwar's 25 characters while training.
    one_line_error(evaluate(runs["random"]), "of the 25 characters of benchmark alphabet while training")
    one_line_error(evaluate(runs["lake"], "--option", "alphabet=Klingon"), "no alphabet 'Klingon' in the data")

    pip("uninstall", "-y", "omnimeta-alphabet")
    one_line_error(evaluate(runs["lake"]), "'alphabet' is not one of")
