"""compare with several seeds of one solver: one row, the spread across seeds, paired differences on seed means."""
import csv
import json
import statistics

import pytest
import torch

from l2l_omniglot.compare import ROW_KEYS, compare_rows, score_runs
from l2l_omniglot.evaluation import PairedDifference, Score
from l2l_omniglot.reporting import COMPARE_COLUMNS, table_cells
from tests.conftest import TINY, invoke, train_tiny_runs

SETTINGS = dict(TINY, val_tasks=2, eval_tasks=6, test_inner_steps=1)  # enough test tasks for a spread over seeds


@pytest.fixture(scope="module")
def runs(tmp_path_factory, omniglot):
    """Three seeds of fomaml and one transfer run, tiny."""
    runs = {"f0": ("fomaml", {"seed": 0}), "f1": ("fomaml", {"seed": 1}), "f2": ("fomaml", {"seed": 2}),
            "t": ("transfer", {"seed": 0})}
    return list(train_tiny_runs(tmp_path_factory.mktemp("seeds"), omniglot, runs, **SETTINGS).values())


@pytest.fixture(scope="module")
def scored(runs, omniglot):
    return score_runs(runs, omniglot)


def test_seeds_of_one_solver_are_one_row_with_their_spread(scored):
    rows = compare_rows(scored)
    assert [row["solver"] for row in rows] == ["fomaml", "transfer (classes)"]
    fomaml, transfer = rows
    seeds = [run.per_task for run in scored[:3]]
    accuracies = [p.mean().item() for p in seeds]
    assert fomaml["seeds"] == 3 and fomaml["seed_values"] == [0, 1, 2]
    assert fomaml["test_accuracy"] == pytest.approx(statistics.mean(accuracies))
    assert fomaml["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
    assert (fomaml["test_accuracy_min"], fomaml["test_accuracy_max"]) == (min(accuracies), max(accuracies))
    averaged = torch.stack(seeds).mean(dim=0)
    assert fomaml["test_ci95"] == pytest.approx(Score.of(averaged).ci95)
    assert fomaml["run"] == ", ".join(str(run.run_dir) for run in scored[:3])
    assert fomaml["val_accuracy"] == pytest.approx(statistics.mean(r.result["val_accuracy"] for r in scored[:3]))
    assert transfer["seeds"] == 1 and transfer["test_accuracy_std"] is None
    assert transfer["test_accuracy"] == pytest.approx(scored[3].per_task.mean().item())
    best, other = (fomaml, transfer) if fomaml["best"] else (transfer, fomaml)
    best_tasks, other_tasks = (averaged, scored[3].per_task) if fomaml["best"] else (scored[3].per_task, averaged)
    assert not other["best"] and best["diff_to_best"] == 0
    assert other["diff_to_best"] == pytest.approx(PairedDifference.of(other_tasks, best_tasks).mean)
    header = table_cells(rows)[0]
    assert header[:2] == ["solver", "seeds"] and "across seeds: std (min–max)" in header
    cells = dict(zip(header, table_cells(rows)[1]))
    assert cells["seeds"] == "3"
    assert cells["across seeds: std (min–max)"].startswith(f"{fomaml['test_accuracy_std']:.4f} (")


def test_runs_of_one_seed_each_keep_the_rows_and_columns_of_before(scored):
    rows = compare_rows([scored[0], scored[3]])
    assert [list(row) for row in rows] == [list(ROW_KEYS)] * 2
    assert rows[0]["run"] == str(scored[0].run_dir) and rows[0]["test_accuracy"] == scored[0].per_task.mean().item()
    assert table_cells(rows)[0] == [title for _, title in COMPARE_COLUMNS]


def test_compare_command_groups_seeds_in_its_table_and_files(runs, data_root, tmp_path):
    out = tmp_path / "cmp"
    result = invoke("compare", *[a for run in runs for a in ("--runs", run)], "--data-root", data_root,
                    "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "across seeds" in result.stdout
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [(r["solver"], r["seeds"]) for r in rows] == [("fomaml", 3), ("transfer (classes)", 1)]
    with open(out / "compare.csv") as handle:
        from_csv = list(csv.DictReader(handle))
    assert [r["seeds"] for r in from_csv] == ["3", "1"]
    markdown = (out / "compare.md").read_text()
    assert "| fomaml | 3 |" in markdown and "| transfer (classes) | 1 |" in markdown


def test_a_run_given_twice_is_refused_in_one_line(runs, data_root, tmp_path):
    result = invoke("compare", "--runs", runs[0], "--runs", runs[0], "--data-root", data_root,
                    "--out", tmp_path / "twice")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is given twice" in result.stderr
