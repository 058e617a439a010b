"""``omnimeta tune``: Optuna studies whose trials are ordinary runs, scored on validation tasks only.

Real Omniglot, tiny budgets (20 iterations, 20 validation tasks): what is checked is what a study writes,
how it continues, how workers share it, what it refuses, and that no test task is ever drawn.
"""
import json
import re
import signal
import time

import pytest

from l2l_omniglot import run_tasks
from l2l_omniglot.config import RunConfig
from l2l_omniglot.run_state import load_saved_state
from l2l_omniglot.data.tasks import TEST_STREAM
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS, log_range, one_of, register_solver, resolve_config, solver_space
from l2l_omniglot.training import train_and_evaluate
from l2l_omniglot.tune import TuneRequest, tune
from tests.conftest import REPO, cli_options, invoke, start_omnimeta

#: A trial long enough to be pruned at its first validation and to differ from another trial.
TRIAL_CLI = cli_options(dict(iterations=20, val_every=10, val_tasks=20, seed=3, device="cpu"))
FAST_PROTONET = {"train_ways": "5:10", "train_queries": "1:3"}  # small episodes: the study's mechanics, quickly
FAST_SPACE = [arg for name, value in FAST_PROTONET.items() for arg in ("--space", f"{name}={value}")]


def one_line_error(result, fragment: str):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines


def trials_of(out_dir):
    return json.loads((out_dir / "tune.json").read_text())["trials"]


def test_every_builtin_solver_declares_a_space_within_its_limits_and_solvers_shows_it(data_root):
    listed = {row["name"]: row for row in json.loads(invoke("solvers", "--json").stdout)}
    for name in ("transfer", "fomaml", "maml", "protonet", "anil"):
        space = {d["name"]: d for d in listed[name]["space"]}
        assert "meta_lr" in space and space["meta_lr"]["kind"] == "log", name
        assert any(not d["shared"] for d in space.values()), name  # and options of its own
    assert listed["maml"]["space"][0] == {"name": "inner_lr", "shared": False, "type": "float", "kind": "log",
                                          "low": 0.05, "high": 1.0, "text": "log 0.05..1"}
    assert {o["name"]: o["tune"] for o in listed["protonet"]["options"]}["batch_norm"] == {
        "kind": "choices", "values": ["running", "task"]}
    text = invoke("solvers").output
    assert "log 0.05..1" in text and "tuned shared settings: meta_lr log 0.0001..0.01" in text


def test_space_overrides_keep_the_declared_scale_and_refuse_what_the_setting_does_not_allow():
    protonet = SOLVERS["protonet"]
    space = {d.name: d for d in solver_space(protonet, {"meta_lr": "1e-4:1e-3", "batch_norm": "task",
                                                        "meta_batch": "1,2", "train_ways": "5:10"}).dimensions}
    assert (space["meta_lr"].range.kind, space["meta_lr"].range.low, space["meta_lr"].range.high) == \
        ("log", 1e-4, 1e-3)
    assert space["batch_norm"].range.values == ("task",)
    assert space["meta_batch"].range.values == (1, 2) and space["meta_batch"].shared
    assert space["train_ways"].range.kind == "linear" and space["train_ways"].type is int
    for overrides, message in [({"inner_lr": "0.1:1"}, "protonet has no option 'inner_lr'"),
                               ({"iterations": "10:20"}, "no tunable shared setting"),
                               ({"train_ways": "1:10"}, "must be at least 2"),
                               ({"batch_norm": "running,sometimes"}, "must be one of running, task"),
                               ({"meta_lr": "-1:1"}, "--meta-lr must be a finite number >= 0"),
                               ({"meta_lr": "0.1:0.01"}, "low <= high"),
                               ({"lr_schedule": "cosine:constant"}, "takes choices")]:
        with pytest.raises(ConfigError, match=message):
            solver_space(protonet, overrides)


@pytest.mark.parametrize("args, message", [
    (["--space", "nonsense=1:2"], "--space nonsense: protonet has no option 'nonsense'"),
    (["--space", "train_ways=1:100"], "--space train_ways is outside what the option allows"),
    (["--space", "train_ways"], "is not NAME=LOW:HIGH or NAME=a,b,c"),
    (["--storage", "sqlite:////nonexistent-folder/deeper/study.db"], "--storage sqlite:////nonexistent-folder"),
    (["--storage", "nosuchdb://somewhere"], "cannot be opened"),
])
def test_bad_tune_input_is_one_line_and_exit_2(args, message, data_root, tmp_path):
    result = invoke("tune", "--solver", "protonet", "--trials", "1", "--out", tmp_path / "study",
                    "--data-root", data_root, *TRIAL_CLI, *args)
    one_line_error(result, message)


def test_a_study_writes_its_report_continues_on_rerun_and_best_json_trains_with_run_params(data_root, tmp_path):
    out = tmp_path / "study"
    result = invoke("tune", "--solver", "protonet", "--trials", "3", "--out", out, "--data-root", data_root, *TRIAL_CLI,
                    *FAST_SPACE, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (out / "study.db").is_file() and report["finished"] == 3 and report["states"] == {"COMPLETE": 3}
    assert [t["number"] for t in report["trials"]] == [0, 1, 2]
    best = report["best"]
    assert best["val_accuracy"] == max(t["val_accuracy"] for t in report["trials"]) > 0.2  # above chance
    assert set(best["params"]) == {"meta_lr", "train_ways", "train_queries", "batch_norm"}
    for name in ("history.png", "importance.png", "parallel.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert set(report["importance"]) == set(best["params"])
    markdown = (out / "tune.md").read_text()
    assert f"validation accuracy {best['val_accuracy']:.4f}" in markdown and best["command"] in markdown
    for trial in report["trials"]:  # each an ordinary run folder, trained to the end, never tested
        folder = out / trial["run_dir"]
        assert trial["iterations"] == 20 and (folder / "checkpoint.pt").is_file()
        result = json.loads((folder / "result.json").read_text())  # a run without a test phase: no test field
        assert result["iterations"] == 20 and not any(key.startswith(("test_", "eval_")) for key in result)
        config = json.loads((folder / "config.json").read_text())
        assert config["options"]["train_ways"] == trial["params"]["train_ways"]
        assert config["meta_lr"] == trial["params"]["meta_lr"] and config["iterations"] == 20

    # The same loop as `omnimeta run`: trial 0's settings trained as a run give the same validation curve.
    trial0 = out / "trial-0000"
    config = RunConfig.from_dict(json.loads((trial0 / "config.json").read_text()))
    config.eval_tasks = 5
    from l2l_omniglot import load_omniglot

    train_and_evaluate(config, load_omniglot(data_root), tmp_path / "plain")
    curve = [json.loads(line).get("val_accuracy") for line in (tmp_path / "plain" / "metrics.jsonl").open()]
    assert curve == [json.loads(line).get("val_accuracy") for line in (trial0 / "metrics.jsonl").open()]

    again = invoke("tune", "--solver", "protonet", "--trials", "5", "--out", out, "--data-root", data_root, *TRIAL_CLI,
                   *FAST_SPACE)
    assert again.exit_code == 0, again.output
    trials = trials_of(out)
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4] and trials[:3] == report["trials"]

    # best.json trains with `run --params`; what the command line gives wins over the file.
    best_json = json.loads((out / "best.json").read_text())
    run_dir = tmp_path / "best-run"
    ran = invoke("run", "--solver", "protonet", "--params", out / "best.json", "--iterations", "4",
                 "--eval-tasks", "5", "--val-tasks", "5", "--option", "train_queries=2", "--out", run_dir,
                 "--data-root", data_root, "--json")
    assert ran.exit_code == 0, ran.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["meta_lr"] == best_json["params"]["meta_lr"] and config["iterations"] == 4
    assert config["options"]["train_ways"] == best_json["params"]["train_ways"]
    assert config["options"]["train_queries"] == 2
    assert config["seed"] == 0  # the study's seed is not carried: a run chooses its own
    one_line_error(invoke("run", "--solver", "maml", "--params", out / "best.json", "--out", tmp_path / "x",
                          "--data-root", data_root), "holds settings of protonet, not maml; add --solver protonet")

    # A study belongs to its solver, settings and space.
    one_line_error(invoke("tune", "--solver", "anil", "--trials", "5", "--out", out, "--data-root", data_root,
                          *TRIAL_CLI), "tunes protonet, not anil")
    one_line_error(invoke("tune", "--solver", "protonet", "--trials", "5", "--out", out, "--data-root", data_root,
                          *TRIAL_CLI[:-2], "--seed", "4", "--device", "cpu", *FAST_SPACE),
                   "was made with another config (seed: 3 there, 4 now)")
    one_line_error(invoke("tune", "--solver", "protonet", "--trials", "5", "--out", out, "--data-root", data_root,
                          *TRIAL_CLI), 'was made with another space (train_queries: "linear 1..3" there, '
                                       '"linear 1..15" now; train_ways: "linear 5..10" there, "linear 5..60" now')


def test_tuning_never_builds_or_samples_a_test_task(data_root, tmp_path, monkeypatch):
    built_phases = []

    def no_test_tasks(sampler, count, stream, *args, **kwargs):
        if stream == TEST_STREAM:
            raise AssertionError("a test task was sampled while tuning")
        return fixed_tasks(sampler, count, stream, *args, **kwargs)

    def record_phases(omniglot, split, ways, shots, queries, augment="none", phases=("train", "val", "test")):
        built_phases.append(tuple(phases))
        return phase_samplers(omniglot, split, ways, shots, queries, augment, phases)

    fixed_tasks, phase_samplers = run_tasks.fixed_tasks, run_tasks.phase_samplers
    monkeypatch.setattr(run_tasks, "fixed_tasks", no_test_tasks)
    monkeypatch.setattr(run_tasks, "phase_samplers", record_phases)
    report = tune(TuneRequest("protonet", 2, tmp_path / "study", {"iterations": 10, "val_every": 5, "val_tasks": 10,
                                                                  "device": "cpu", "meta_lr": 0.002},
                              {"batch_norm": "task"}, space=FAST_PROTONET, data_root=str(data_root)))
    assert report["finished"] == 2 and built_phases and all("test" not in phases for phases in built_phases)
    for trial in report["trials"]:  # what the user fixes is not searched
        assert set(trial["params"]) == {"train_ways", "train_queries"}
        config = json.loads((tmp_path / "study" / trial["run_dir"] / "config.json").read_text())
        assert config["meta_lr"] == 0.002 and config["options"]["batch_norm"] == "task"
    # The patch bites: an ordinary run samples test tasks and is stopped by it.
    with pytest.raises(AssertionError, match="a test task was sampled"):
        train_and_evaluate(resolve_config("protonet", iterations=2, val_every=1, val_tasks=5, eval_tasks=5,
                                          device="cpu"), __import__("l2l_omniglot").load_omniglot(data_root))


def test_a_space_that_draws_only_impossible_settings_stops_with_one_line_and_its_report(data_root, tmp_path):
    # 18 shots + 3 or 4 train queries is more than a character's 20 drawings: known only when the episodes are built
    out = tmp_path / "study"
    result = invoke("tune", "--solver", "protonet", "--trials", "2", "--out", out, "--data-root", data_root,
                    *TRIAL_CLI, "--shots", "18", "--space", "train_queries=3:4", "--space", "train_ways=5:6")
    assert result.exit_code == 2 and "Traceback" not in result.output  # after the bar over trials: one line
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: 2 trials drew settings that cannot run"), result.output
    assert "lower train_queries" in error and "narrow the search space with --space" in error
    report = json.loads((out / "tune.json").read_text())
    assert [trial["state"] for trial in report["trials"]] == ["FAIL", "FAIL"] and report["finished"] == 0
    again = invoke("tune", "--solver", "protonet", "--trials", "2", "--out", out, "--data-root", data_root,
                   *TRIAL_CLI, "--shots", "18", "--space", "train_queries=3:4", "--space", "train_ways=5:6")
    assert again.exit_code == 2 and "2 trials drew settings that cannot run" in again.output
    assert len(json.loads((out / "tune.json").read_text())["trials"]) == 2  # said again, nothing run again


def test_workers_on_a_space_of_only_impossible_settings_stop_with_the_same_line(data_root, tmp_path):
    out = tmp_path / "study"
    result = invoke("tune", "--solver", "protonet", "--trials", "2", "--workers", "2", "--out", out, "--data-root",
                    data_root, *TRIAL_CLI, "--shots", "18", "--space", "train_queries=3:4")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    # A worker may have claimed one more trial while another's was failing: 2 (--trials) to 3 (+ workers - 1).
    assert re.match(r"Error: [23] trials drew settings that cannot run", result.output.strip().splitlines()[-1])
    assert "went on" not in result.output  # no worker went on: the space stopped them all
    assert {trial["state"] for trial in json.loads((out / "tune.json").read_text())["trials"]} == {"FAIL"}


def test_two_workers_share_one_study_and_finish_n_trials_none_twice(data_root, tmp_path):
    out = tmp_path / "study"
    report = tune(TuneRequest("protonet", 4, out, {"iterations": 10, "val_every": 5, "val_tasks": 10,
                                                   "device": "cpu"}, space=FAST_PROTONET, workers=2,
                              data_root=str(data_root)))
    assert report["finished"] == 4 and report["states"] == {"COMPLETE": 4}
    assert sorted(t["number"] for t in report["trials"]) == [0, 1, 2, 3]
    assert len({t["run_dir"] for t in report["trials"]}) == 4
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-000{n}" for n in range(4)]
    # Both workers worked (distinct processes ran trials), each on its own sampler seed.
    import optuna

    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2


def test_a_plugin_solver_is_tuned_with_its_own_space(data_root, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples" / "centroid_plugin"))
    from omnimeta_centroid import CentroidSolver  # the example plugin, registered here instead of installed

    register_solver(CentroidSolver)
    try:
        space = {d.name: d.range for d in solver_space(CentroidSolver).dimensions}
        assert space == {"normalize": one_of(True, False), "meta_lr": log_range(1e-4, 1e-2),
                         "meta_batch": one_of(4, 8, 16)}
        out = tmp_path / "centroid"  # the library: the CLI's --solver choices were fixed when it was imported
        report = tune(TuneRequest("centroid", 2, out, {"iterations": 6, "val_every": 3, "val_tasks": 10,
                                                       "device": "cpu"}, data_root=str(data_root)))
        assert report["finished"] == 2
        # One worker and one seed repeat a study on the CPU: the same settings, the same scores.
        again = tune(TuneRequest("centroid", 2, tmp_path / "again", {"iterations": 6, "val_every": 3,
                                                                     "val_tasks": 10, "device": "cpu"},
                                 data_root=str(data_root)))
        assert [(t["params"], t["val_accuracy"]) for t in again["trials"]] == \
            [(t["params"], t["val_accuracy"]) for t in report["trials"]]
        for trial in report["trials"]:
            assert set(trial["params"]) == {"normalize", "meta_lr", "meta_batch"}
            config = json.loads((out / trial["run_dir"] / "config.json").read_text())
            assert config["solver"] == "centroid" and config["options"]["normalize"] == trial["params"]["normalize"]
        with pytest.raises(ConfigError, match="registered in this process only"):
            tune(TuneRequest("centroid", 2, tmp_path / "w", workers=2, data_root=str(data_root)))
    finally:
        del SOLVERS["centroid"]


def test_a_pruned_trial_stops_cleanly_after_its_validation(data_root, tmp_path):
    import optuna

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    from l2l_omniglot import load_omniglot
    from l2l_omniglot.tune_trials import Objective

    request = TuneRequest("protonet", 1, tmp_path, {"iterations": 12, "val_every": 4, "val_tasks": 10,
                                                    "device": "cpu"}, space=FAST_PROTONET)
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    study.optimize(Objective(request, solver_space(SOLVERS["protonet"], FAST_PROTONET), load_omniglot(data_root)),
                   n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["iterations"] == 4
    assert list(trial.intermediate_values) == [4]
    run_dir = tmp_path / "trial-0000"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
    assert load_saved_state(run_dir)[1]["trainer"]["iteration"] == 4  # saved where it stopped


def _wait_for_training(run_dir, process, deadline_s=300):
    """Until the trial in ``run_dir`` has written a metrics line (the study is mid-trial)."""
    metrics = run_dir / "metrics.jsonl"
    for _ in range(deadline_s * 10):  # a hang guard, not a timing assertion
        if metrics.is_file() and metrics.read_text().strip():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("the study did not start training")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_killed_worker_fails_its_trial_then_the_study_goes_on(data_root, tmp_path):
    out = tmp_path / "study"
    args = ["tune", "--solver", "protonet", "--trials", "2", "--out", out, "--iterations", "100", "--val-every",
            "50", "--val-tasks", "10", "--device", "cpu", *FAST_SPACE]
    process = start_omnimeta(*args, data_root=data_root, env={"OMNIMETA_THREADS": "1"})
    _wait_for_training(out / "trial-0000", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "continue with the same command (omnimeta tune --solver protonet --trials 2" in stderr.strip()
    assert [(t["number"], t["state"], t["error"]) for t in trials_of(out)] == [(0, "FAIL", "interrupted")]

    process = start_omnimeta(*args, data_root=data_root, env={"OMNIMETA_THREADS": "1"})
    _wait_for_training(out / "trial-0001", process)  # the next trial is training: kill -9 its worker
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)

    finished = invoke(*args, "--data-root", data_root, "--json")
    assert finished.exit_code == 0, finished.output
    states = [(t["number"], t["state"]) for t in json.loads(finished.stdout)["trials"]]
    assert states == [(0, "FAIL"), (1, "FAIL"), (2, "COMPLETE"), (3, "COMPLETE")]
    assert "ended mid-trial" in trials_of(out)[1]["error"]
