"""compare, evaluate and predict, end to end with tiny budgets."""
import csv
import json
import struct

import pytest
from PIL import Image

from l2l_omniglot import resolve_config, train_and_evaluate
from tests.conftest import REPO, TINY, cli_options, invoke

#: Two validations (a curve) and 12 test tasks (an interval to compare).
SETTINGS_CLI = cli_options(dict(TINY, iterations=4, val_tasks=4, eval_tasks=12, test_inner_steps=3))
SAMPLE = REPO.parent / "shared" / "omniglot-test-sample"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    result = invoke("compare", "--data-root", data_root, "--out", out, *SETTINGS_CLI)
    assert result.exit_code == 0, result.stderr
    return out, result.stdout


def test_compare_prints_one_row_per_solver_and_writes_four_files(comparison):
    out, stdout = comparison
    for name in ("compare.json", "compare.csv", "compare.md", "curves.png"):
        assert (out / name).is_file()
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["solver"] for r in rows] == ["transfer (classes)", "fomaml", "maml"]
    for row in rows:
        assert f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}" in stdout
        assert row["test_tasks"] == 12 and row["iterations"] == 4
    assert sum(r["best"] for r in rows) == 1


def test_compare_table_rows_equal_its_files(comparison):
    out, _ = comparison
    rows = json.loads((out / "compare.json").read_text())["rows"]
    with open(out / "compare.csv") as handle:
        from_csv = list(csv.DictReader(handle))
    assert [r["solver"] for r in from_csv] == [r["solver"] for r in rows]
    assert [float(r["test_accuracy"]) for r in from_csv] == [r["test_accuracy"] for r in rows]
    markdown = (out / "compare.md").read_text()
    for row in rows:
        assert f"| {row['solver']} | {row['iterations']} |" in markdown
        assert f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}" in markdown
        # the trained runs are scored on the same tasks as their own result.json
        own = json.loads((out / row["solver"].split()[0] / "result.json").read_text())
        assert own["test_accuracy"] == pytest.approx(row["test_accuracy"])


def test_curves_png_is_a_real_png_with_one_line_per_solver(comparison):
    out, _ = comparison
    data = (out / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 300
    with Image.open(out / "curves.png") as image:
        pixels = image.convert("RGB")
        colours = {pixels.getpixel((x, y)) for x in range(0, width, 2) for y in range(0, height, 2)}
    # matplotlib's first three line colours: blue, orange, green
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert colour in colours


def test_compare_reuses_finished_runs(comparison, data_root, tmp_path):
    out, _ = comparison
    result = invoke("compare", "--runs", out / "fomaml", "--runs", out / "maml", "--data-root", data_root,
                    "--eval-tasks", "12", "--out", tmp_path / "again", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    before = {r["solver"]: r["test_accuracy"] for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert {r["solver"]: r["test_accuracy"] for r in rows} == {k: before[k] for k in ("fomaml", "maml")}


def test_evaluate_rescores_a_run_and_changes_shots(comparison, data_root):
    out, _ = comparison
    result = invoke("evaluate", out / "fomaml", "--data-root", data_root, "--eval-tasks", "12", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    own = json.loads((out / "fomaml" / "result.json").read_text())
    assert report["test_accuracy"] == pytest.approx(own["test_accuracy"])
    five = json.loads(invoke("evaluate", out / "fomaml", "--data-root", data_root, "--eval-tasks", "5",
                             "--shots", "5", "--json").stdout)
    assert five["shots"] == 5 and five["test_tasks"] == 5


def test_evaluate_changes_the_way_where_the_solver_allows_it(comparison, data_root):
    out, _ = comparison
    result = invoke("evaluate", out / "transfer", "--data-root", data_root, "--ways", "20", "--eval-tasks", "4",
                    "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ways"], report["test_tasks"]) == (20, 4) and 0.0 <= report["test_accuracy"] <= 1.0
    refused = invoke("evaluate", out / "maml", "--data-root", data_root, "--ways", "20", "--eval-tasks", "4")
    assert refused.exit_code == 2 and "5-way head and cannot answer 20-way" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_evaluate_lake20_refuses_a_5_way_model_and_scores_a_20_way_one(comparison, data_root, tmp_path):
    out, _ = comparison
    refused = invoke("evaluate", out / "maml", "--data-root", data_root, "--benchmark", "lake20")
    assert refused.exit_code == 2 and "5-way head and cannot answer 20-way" in refused.stderr
    trained = invoke("run", "--solver", "fomaml", "--ways", "20", "--data-root", data_root,
                     "--out", tmp_path / "w20", *SETTINGS_CLI)
    assert trained.exit_code == 0, trained.stderr
    result = invoke("evaluate", tmp_path / "w20", "--data-root", data_root, "--benchmark", "lake20", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["runs"] == 20 and len(report["per_run_error"]) == 20
    assert 0.0 <= report["error"] <= 1.0 and report["human_error"] == 0.045


def test_predict_writes_the_hw15_csv_and_is_repeatable(comparison, data_root, tmp_path):
    out, _ = comparison
    answers = SAMPLE / "Omniglot-test-answers.csv"
    first = invoke("predict", out / "transfer", SAMPLE / "Omniglot-test", "-o", tmp_path / "a.csv",
                   "--answers", answers, "--data-root", data_root, "--json")
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["rows"] == 200
    assert report["accuracy"] > 0.3  # chance is 0.2; this model trained for 4 iterations
    second = invoke("predict", out / "transfer", SAMPLE / "Omniglot-test", "-o", tmp_path / "b.csv",
                    "--data-root", data_root)
    assert second.exit_code == 0, second.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "id,class" and [int(line.split(",")[0]) for line in lines[1:]] == list(range(200))


def test_predict_on_a_broken_test_folder_writes_nothing(comparison, data_root, tmp_path):
    import shutil

    out, _ = comparison
    broken = tmp_path / "Omniglot-test"
    shutil.copytree(SAMPLE / "Omniglot-test", broken)
    (broken / "query" / "0003" / "image_2.png").unlink()
    result = invoke("predict", out / "fomaml", broken, "-o", tmp_path / "out.csv", "--data-root", data_root)
    assert result.exit_code == 2
    assert "query/0003" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_compare_rows_of_one_solver_are_told_apart(omniglot, tmp_path):
    from l2l_omniglot.compare import compare_rows, score_runs

    for name, inner_lr in (("slow", 0.1), ("fast", 0.4)):
        train_and_evaluate(resolve_config("fomaml", inner_lr=inner_lr, **TINY), omniglot, tmp_path / name)
    rows = compare_rows(score_runs([tmp_path / "slow", tmp_path / "fast"], omniglot))
    assert [row["solver"] for row in rows] == ["fomaml (slow; inner_lr=0.1)", "fomaml (fast; inner_lr=0.4)"]
