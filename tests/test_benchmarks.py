"""Benchmarks as plugins: the built-ins through the entry-point group, the hw15 folder, and the protocol's checks."""
import contextlib
import json

import pytest

from l2l_omniglot.benchmarks import BENCHMARKS, Benchmark, make_benchmark, register_benchmark
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.scoring import evaluate_run, predict_folder
from tests.conftest import REPO, TINY, invoke, train_tiny_runs

SAMPLE = REPO.parent / "shared" / "omniglot-test-sample"
SETTINGS = dict(TINY, iterations=4, val_tasks=4, eval_tasks=8)  # two validations, enough tasks to score


@pytest.fixture(scope="module")
def lake_run(tmp_path_factory, omniglot):
    return train_tiny_runs(tmp_path_factory.mktemp("bench"), omniglot, {"protonet": ("protonet", {})},
                           **SETTINGS)["protonet"]


def test_benchmarks_lists_the_builtins_from_the_entry_point_group():
    result = invoke("benchmarks", "--json")
    assert result.exit_code == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(listed)[:3] == ["tasks", "lake20", "hw15"]
    assert {row["package"] for name, row in listed.items() if name in ("tasks", "lake20", "hw15")} == {"omnimeta"}
    assert listed["lake20"]["leak_guard"] == "lake_runs" and listed["hw15"]["leak_guard"] == "evaluation_set"
    assert [o["name"] for o in listed["tasks"]["options"]] == ["ways", "shots", "eval_tasks"]
    assert [o["name"] for o in listed["hw15"]["options"]] == ["folder", "answers"]
    plain = invoke("benchmarks")
    assert "lake20 (omnimeta)" in plain.stdout and "leak guard: lake_runs" in plain.stdout


def test_the_tasks_benchmark_repeats_the_runs_own_test_score(lake_run, omniglot):
    result = json.loads((lake_run / "result.json").read_text())
    report = evaluate_run(lake_run, omniglot, "tasks")
    assert report["test_accuracy"] == result["test_accuracy"] and report["test_tasks"] == 8
    other = evaluate_run(lake_run, omniglot, "tasks", eval_tasks=5, shots=2)
    assert (other["test_tasks"], other["shots"], other["ways"]) == (5, 2, 5)


def test_evaluate_reports_its_progress_with_the_number_of_tasks(lake_run, omniglot):
    shown = []

    @contextlib.contextmanager
    def progress(description, total):
        shown.append((description, total))
        yield lambda done: shown.append(done)

    evaluate_run(lake_run, omniglot, "tasks", eval_tasks=7, progress=progress)
    assert shown[0] == ("evaluate (tasks)", 7) and sum(shown[1:]) == 7


def test_hw15_scored_by_evaluate_equals_predicts_accuracy(lake_run, omniglot, tmp_path):
    answers = SAMPLE / "Omniglot-test-answers.csv"
    predicted = predict_folder(lake_run, SAMPLE / "Omniglot-test", tmp_path / "s.csv", answers, omniglot=omniglot)
    result = invoke("evaluate", lake_run, "--benchmark", "hw15", "--option", f"folder={SAMPLE / 'Omniglot-test'}",
                    "--option", f"answers={answers}", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["benchmark"] == "hw15" and report["test_tasks"] * 5 == predicted["rows"] == 200
    assert report["test_accuracy"] == pytest.approx(predicted["accuracy"], abs=1e-12)
    assert report["evaluation_characters_seen"] == 0 and report["leak_warning"] is None


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark", "hw15"], "benchmark hw15 needs its folder: add --option folder=PATH"),
    (["--benchmark", "hw15", "--option", f"folder={SAMPLE / 'Omniglot-test'}"],
     "hw15 scores a folder against its answers: add --option answers=CSV"),
    (["--benchmark", "lake20", "--ways", "20"], "--ways does not apply to lake20 (20 fixed 20-way one-shot runs)"),
    (["--benchmark", "tasks", "--option", "colour=red"], "--option colour does not apply to tasks"),
    (["--benchmark", "tasks", "--option", "colour"], "--option 'colour' is not NAME=VALUE"),
    (["--benchmark", "nonesuch"], "'nonesuch' is not one of 'tasks', 'lake20', 'hw15'"),
])
def test_a_wrong_benchmark_option_is_one_line(lake_run, args, fragment):
    result = invoke("evaluate", lake_run, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines


class Incomplete:
    name = "incomplete"


class Renamed(Benchmark):
    name = "something-else"


def test_an_in_process_benchmark_must_meet_the_protocol():
    with pytest.raises(ConfigError, match="benchmark plugin 'incomplete' .* lacks description, about, Options, "
                                          "leak_guard, characters, items"):
        register_benchmark(Incomplete)
    with pytest.raises(ConfigError, match="names itself 'something-else'"):
        register_benchmark(Renamed, "renamed")
    assert "incomplete" not in BENCHMARKS and "renamed" not in BENCHMARKS


def test_a_registered_benchmark_is_scored_through_its_own_members(lake_run, omniglot):
    class FirstTasks(Benchmark):
        name = "first-tasks"
        description = "The run's first two fixed test tasks, one guard: none."
        about = "two tasks"
        leak_guard = "none"

        def items(self, config, omniglot):
            return make_benchmark("tasks", {"eval_tasks": 2}).items(config, omniglot)

    register_benchmark(FirstTasks)
    try:
        report = evaluate_run(lake_run, omniglot, "first-tasks")
        same = evaluate_run(lake_run, omniglot, "tasks", eval_tasks=2)
    finally:
        del BENCHMARKS["first-tasks"]
    assert report["test_tasks"] == 2 and report["test_accuracy"] == same["test_accuracy"]


def test_a_benchmark_that_cannot_be_imported_is_named_with_its_package_and_the_others_work(monkeypatch, lake_run,
                                                                                             omniglot):
    from l2l_omniglot.benchmarks import describe_benchmarks
    from l2l_omniglot.benchmarks.registry import BenchmarkEntry

    ghost = BenchmarkEntry("ghost", "omnimeta_ghost_benchmark:GhostBenchmark", "omnimeta-ghost")
    monkeypatch.setattr(BENCHMARKS, "_installed", {**BENCHMARKS._entries(), "ghost": ghost})
    listed = {row["name"]: row for row in describe_benchmarks()}
    assert "cannot be loaded (ModuleNotFoundError" in listed["ghost"]["error"] and "error" not in listed["tasks"]
    with pytest.raises(ConfigError, match="benchmark plugin 'ghost' .* from package omnimeta-ghost cannot be loaded"):
        evaluate_run(lake_run, omniglot, "ghost")
    assert evaluate_run(lake_run, omniglot, "tasks", eval_tasks=2)["test_tasks"] == 2
