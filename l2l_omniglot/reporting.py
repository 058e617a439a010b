"""Result tables and files: rich tables for the terminal, JSON/CSV/Markdown and plots for the run folder."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rich.table import Table

from l2l_omniglot.atomic import atomic_path, write_text

COMPARE_COLUMNS = (
    ("solver", "solver"),
    ("iterations", "iterations"),
    ("train_seconds", "meta-train time (s)"),
    ("iterations_per_second", "it/s"),
    ("val_accuracy", "val acc"),
    ("test", "test acc ± 95% CI"),
    ("peak_rss_mb", "peak memory (MB)"),
    ("versus_best", "vs best (paired)"),
)
#: The columns a comparison with several seeds of a solver adds: after the solver, and after its test accuracy.
SEED_COLUMNS = {"solver": ("seeds", "seeds"), "test": ("seed_spread", "across seeds: std (min–max)")}


def compare_columns(rows: list) -> tuple:
    """:data:`COMPARE_COLUMNS`, with :data:`SEED_COLUMNS` when some row has several seeds (rows with ``seeds``)."""
    if not any("seeds" in row for row in rows):
        return COMPARE_COLUMNS
    columns = []
    for key, title in COMPARE_COLUMNS:
        columns.append((key, title))
        if key in SEED_COLUMNS:
            columns.append(SEED_COLUMNS[key])
    return tuple(columns)


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key == "test":
        return f"{row['test_accuracy']:.4f} ± {row['test_ci95']:.4f}"
    if key == "seed_spread":
        if row.get("test_accuracy_std") is None:
            return "-"
        return f"{row['test_accuracy_std']:.4f} ({row['test_accuracy_min']:.4f}–{row['test_accuracy_max']:.4f})"
    if key == "versus_best":
        if row["best"]:
            return "best"
        verdict = "significant" if row["significant"] else "not significant"
        return f"{row['diff_to_best']:+.4f} ± {row['diff_ci95']:.4f} ({verdict})"
    if value is None:
        return "-"
    if key in ("val_accuracy",):
        return f"{value:.4f}"
    if key in ("train_seconds", "peak_rss_mb"):
        return f"{value:.0f}"
    if key == "iterations_per_second":
        return f"{value:.2f}"
    return str(value)


def table_cells(rows: list) -> list:
    """The table as text cells, header first; the terminal, CSV and Markdown all show these.

    A row of several seeds shows their mean, the 95% interval over tasks of the
    seed-averaged accuracy, and the spread across seeds in a column of its own.
    """
    columns = compare_columns(rows)
    return [[title for _, title in columns]] + [[_cell(row, key) for key, _ in columns] for row in rows]


def compare_table(rows: list, title: str) -> Table:
    cells = table_cells(rows)
    table = Table(title=title)
    for i, header in enumerate(cells[0]):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in cells[1:]:
        table.add_row(*row)
    return table


def markdown_table(cells: list) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines) + "\n"


def write_compare_files(out_dir: Path, rows: list, title: str, curves: dict) -> list:
    """``compare.json``, ``compare.csv``, ``compare.md`` and ``curves.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = table_cells(rows)
    write_text(out_dir / "compare.json", json.dumps({"title": title, "rows": rows}, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "compare.csv", buffer.getvalue())
    write_text(out_dir / "compare.md", f"# {title}\n\n" + markdown_table(cells))
    plot_curves(out_dir / "curves.png", curves)
    return [out_dir / name for name in ("compare.json", "compare.csv", "compare.md", "curves.png")]


def plot_curves(path: Path, curves: dict) -> None:
    """Validation accuracy against iterations (left) and wall time (right), one line per solver."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_iteration, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, curve in curves.items():
        by_iteration.plot(curve["iterations"], curve["val_accuracy"], marker="o", markersize=3, label=label)
        by_time.plot(curve["seconds"], curve["val_accuracy"], marker="o", markersize=3, label=label)
    by_iteration.set_xlabel("meta-iteration")
    by_time.set_xlabel("meta-train wall time (s)")
    for axes in (by_iteration, by_time):
        axes.set_ylabel("validation accuracy")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
