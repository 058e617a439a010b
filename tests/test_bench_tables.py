"""The scripts behind docs/results.md's tables run (smoke runs on tiny run folders; their numbers mean nothing)."""
import importlib.util
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from l2l_omniglot import resolve_config, train_and_evaluate
from tests.conftest import REPO, TINY, train_tiny_runs

SETTINGS = dict(TINY, meta_batch=1, val_tasks=2, eval_tasks=4, test_inner_steps=1)  # the tables' own smallest sweep


def bench(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script(*args, **kwargs):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, omniglot):
    """fomaml on the lake split with seeds 0 and 1; a lake-split and a vinyals-split 20-way one-shot run."""
    root = tmp_path_factory.mktemp("bench")
    for name, overrides in (("lake_s0", {}), ("lake_s1", {"seed": 1}), ("lake_w20", {"ways": 20}),
                            ("vinyals_w20", {"ways": 20, "split": "vinyals"})):
        train_and_evaluate(resolve_config("fomaml", **SETTINGS, **overrides), omniglot, root / "runs" / name)
    return root


@pytest.mark.slow
def test_test_steps_sweeps_on_validation_tasks_of_their_own(runs, data_root, omniglot, tmp_path):
    out = tmp_path / "steps.json"
    finished = script("bench/test_steps.py", runs / "runs" / "lake_s0", "--tasks", "3", "--steps", "0,2",
                      "--transductive", "both", "--json", out, "--data-root", data_root)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(out.read_text())
    assert report["tasks"]["phase"] == "val" and report["tasks"]["count"] == 3
    assert [(r["test_inner_steps"], r["transductive"]) for r in report["rows"]] == \
        [(0, True), (2, True), (0, False), (2, False)]
    assert "| test steps | transductive | val acc ± 95% CI (3 validation tasks) | seconds |" in finished.stdout
    assert "validation characters" in finished.stdout and "Best on validation" in finished.stdout
    # the tuning tasks are validation characters' tasks, but neither the run's validation list nor test tasks
    from l2l_omniglot.run_tasks import RunTasks

    config = resolve_config("fomaml", **SETTINGS)
    tuning = bench("test_steps").tuning_tasks(config, omniglot, 3)
    fixed = RunTasks.build(resolve_config("fomaml", **{**SETTINGS, "val_tasks": 3, "eval_tasks": 3}), omniglot,
                            phases=("val", "test"))
    assert not torch.equal(tuning.support_x, fixed.val_tasks.support_x)
    assert not torch.equal(tuning.support_x, fixed.test_tasks.support_x)


def test_test_steps_refuses_a_bad_option_in_one_line(runs, data_root):
    finished = script("bench/test_steps.py", runs / "runs" / "lake_s0", "--steps", "a,b", "--data-root", data_root)
    assert finished.returncode == 2 and finished.stderr.count("\n") == 1 and "--steps" in finished.stderr


@pytest.mark.slow
def test_results_table_groups_seeds_and_names_its_tasks(runs, data_root, tmp_path):
    out = tmp_path / "tables.json"
    finished = script("bench/results_table.py", runs / "runs", "--score-lake20", "--data-root", data_root,
                      "--json", out)
    assert finished.returncode == 0, finished.stderr
    text = finished.stdout
    assert text.index("**lake split.**") < text.index("**vinyals split.**") < text.index("**Lake's 20-way")
    assert "2 fixed validation tasks" in text and "4 fixed test tasks" in text
    tables = json.loads(out.read_text())
    five_way = [row for row in tables["lake"] if row["ways"] == 5]
    assert len(five_way) == 1 and five_way[0]["seeds"] == [0, 1]
    results = [json.loads((runs / "runs" / name / "result.json").read_text())["test_accuracy"]
               for name in ("lake_s0", "lake_s1")]
    assert five_way[0]["test"]["mean"] == pytest.approx(sum(results) / 2)
    assert five_way[0]["test"]["min"] == min(results) and five_way[0]["test"]["max"] == max(results)
    assert "| fomaml | 5-way 1-shot | 2 |" in text
    vinyals, = tables["vinyals"]
    assert vinyals["paper"] == "89.4 ± 0.5 (Nichol et al. 2018 (first-order MAML, transductive))"
    # lake20: the lake-split run is scored (and its lake20.json written); the vinyals run saw 78 of the characters
    assert (runs / "runs" / "lake_w20" / "lake20.json").is_file()
    assert not (runs / "runs" / "vinyals_w20" / "lake20.json").exists()
    assert "vinyals_w20 left out of the lake20 table: this model saw 78 of the 200 characters" in finished.stderr
    scored = [row for row in tables["lake20"] if "runs" in row]
    assert len(scored) == 1 and scored[0]["split"] == "lake"
    assert scored[0]["trained"] == "20-way 1-shot, 2 iterations"
    for reference in ("humans | - | - | - | 4.5%", "(BPL) | - | - | - | 3.3%",
                      "Prototypical Networks | - | - | - | 13.7%", "Siamese convolutional network | - | - | - | 8.0%"):
        assert reference in text
    again = script("bench/results_table.py", runs / "runs")  # lake20.json is now read, not recomputed
    assert again.returncode == 0 and "**Lake's 20-way" in again.stdout


def test_results_table_without_runs_is_one_line(tmp_path):
    finished = script("bench/results_table.py", tmp_path)
    assert finished.returncode == 2 and finished.stderr.count("\n") == 1 and "no run folders" in finished.stderr


@pytest.mark.slow
def test_results_table_scores_another_way_where_the_solver_can(runs, omniglot, data_root, tmp_path):
    """A 5-way ProtoNet checkpoint becomes a 20-way row (as in Snell et al.); a 5-way FO-MAML head cannot."""
    folder = tmp_path / "ways"
    tiny = {k: v for k, v in SETTINGS.items() if k != "test_inner_steps"}
    train_and_evaluate(resolve_config("protonet", **tiny, split="vinyals"), omniglot, folder / "proto")
    train_and_evaluate(resolve_config("fomaml", **SETTINGS, split="vinyals"), omniglot, folder / "fomaml")
    out = tmp_path / "tables.json"
    finished = script("bench/results_table.py", folder, "--score-ways", "20", "--data-root", data_root,
                      "--json", out)
    assert finished.returncode == 0, finished.stderr
    assert (folder / "proto" / "evaluate-20w1s.json").is_file()
    assert not (folder / "fomaml" / "evaluate-20w1s.json").exists()
    assert "fomaml has no 20-way row: this model has a 5-way head" in finished.stderr
    rows = {(row["solver"], row["ways"]): row for row in json.loads(out.read_text())["vinyals"]}
    evaluated = rows[("protonet (20-way training), trained 5-way 1-shot", 20)]
    assert evaluated["paper"] == "96.0 (Snell et al. 2017, Table 1)" and evaluated["val"] is None
    assert evaluated["test_tasks"] == 4
    assert "`proto` (evaluate)" in finished.stdout


@pytest.mark.slow
def test_train_script_prints_the_validation_curve_and_the_result(data_root, tmp_path):
    config = json.dumps({"solver": "fomaml", "iterations": 2, "meta_batch": 2, "val_every": 1, "val_tasks": 2,
                         "eval_tasks": 2, "test_inner_steps": 1})
    finished = script("bench/train.py", tmp_path / "run", config, "--threads", "1", "--data-root", data_root)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines[:2]] == ["it=1", "it=2"]
    result = json.loads(lines[-1])
    assert (result["iterations"], result["threads"], result["threads_source"]) == (2, 1, "--threads")
    assert result == json.loads((tmp_path / "run" / "result.json").read_text())


def test_fair_table_sets_each_tuned_row_beside_its_default_and_prices_the_study(data_root, omniglot, tmp_path):
    from l2l_omniglot.tune import TuneRequest, tune

    fair = tmp_path / "fair"
    for solver in ("protonet", "anil"):  # anil's study has no full-length runs: said so, not filled in
        tune(TuneRequest(solver, 2, fair / "tune" / solver, {"iterations": 4, "val_every": 2, "val_tasks": 4,
                                                           "device": "cpu"},
                         space={"train_ways": "5:6", "train_queries": "1:2"} if solver == "protonet" else {},
                         data_root=str(data_root)))
    runs = train_tiny_runs(fair / "runs", omniglot, {"protonet-default-s0": ("protonet", {}),
                                                      "protonet-tuned-s0": ("protonet", {"meta_lr": 0.01}),
                                                      "protonet-tuned-s1": ("protonet", {"meta_lr": 0.01, "seed": 1})},
                           **TINY)
    shutil.copytree(runs["protonet-tuned-s0"], fair / "runs" / "protonet-tuned-sweep")  # not a seed: left out
    result = bench("fair_table").report(fair)
    text = result["markdown"]
    assert result["solvers"] == ["protonet", "anil"] and result["ranking_default"] == ["protonet"]
    val = {name: json.loads((path / "result.json").read_text())["val_accuracy"] for name, path in runs.items()}
    before = val["protonet-default-s0"]
    gain = round((val["protonet-tuned-s0"] + val["protonet-tuned-s1"]) / 2 - before, 6)
    half_width = 1.96 * math.sqrt(before * (1 - before) / (TINY["val_tasks"] * 5 * TINY["queries"]))
    verdict = "yes" if gain > half_width else "within noise" if gain > -half_width else "no"
    assert "| protonet | tuned | 2 | 2 |" in text and f"{verdict} ({gain:+.4f}; ±{half_width:.4f})" in text
    # The tiny runs are not today's defaults, and a run of today's defaults is named as such.
    assert "| protonet | default (as run; today's differs) | 1 |" in text
    todays = {"config": resolve_config("protonet", seed=3, device="cpu")}
    assert bench("fair_table").arm_label("tuned", [todays]) == "tuned (now the default)"
    assert bench("fair_table").arm_label("default", [todays]) == "default"
    assert "| anil | default | not run |" in text and "| anil | not measured |" in text
    study = json.loads((fair / "tune" / "protonet" / "tune.json").read_text())
    assert "| protonet | 2 of 2 (" in text and f"{sum(t['seconds'] for t in study['trials']):.0f}" in text
    with pytest.raises(SystemExit, match="holds no study"):
        bench("fair_table").report(tmp_path / "empty")


def test_time_to_accuracy_reads_the_first_validation_at_each_threshold(tmp_path):
    """Two run folders written here: the times at the first validation at or above each threshold, in order."""
    curves = {"before": [(250, 0.93, 40.0), (500, 0.951, 80.0), (750, 0.97, 120.0)],
              "after": [(250, 0.955, 15.0), (500, 0.981, 30.0), (750, 0.975, 45.0)]}
    for name, curve in curves.items():
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"solver": "protonet", "iterations": 750, "options": {},
                                                     "precision": "float32" if name == "before" else "bfloat16"}))
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"iteration": i, "loss": 1.0, "seconds": s - 1}) + "\n"
            + json.dumps({"iteration": i, "val_accuracy": v, "seconds": s}) + "\n" for i, v, s in curve))
        best = max(curve, key=lambda point: point[1])
        (run / "result.json").write_text(json.dumps({
            "best_iteration": best[0], "train_seconds": curve[-1][2], "iterations": 750, "step_seconds": 75.0,
            "val_accuracy": best[1], "test_accuracy": 0.97, "test_ci95": 0.01}))
    finished = script(REPO / "bench" / "time_to_accuracy.py", tmp_path / "before", tmp_path / "after",
                      "--json", tmp_path / "table.json")
    assert finished.returncode == 0, finished.stderr
    before, after = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert before["reached"] == {"0.95": {"seconds": 80.0, "iteration": 500}, "0.98": None}
    assert after["reached"] == {"0.95": {"seconds": 15.0, "iteration": 250}, "0.98": {"seconds": 30.0, "iteration": 500}}
    assert after["best"] == {"seconds": 30.0, "iteration": 500} and before["step_seconds"] == 0.1
    assert "| before | protonet | - | float32 | 80 s (it 500) | not reached |" in finished.stdout
    # 0.981 against 0.97 over 100 x 5 x 1 answers: +0.011 inside the float32 run's ±0.015.
    assert before["against_float32"] == "reference" and after["against_float32"] == "within (+0.011; ±0.015)"
