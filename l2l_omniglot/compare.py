"""Several solvers on exactly the same test tasks, with paired differences.

:func:`train_isolated` trains one solver in a fresh process (so that its peak
memory is its own) and :func:`score_runs` loads finished runs and scores them
all on one fixed list of test tasks. :func:`compare_rows` puts the two
together into the rows of ``omnimeta compare``'s table::

    from l2l_omniglot.compare import score_runs, compare_rows
    rows = compare_rows(score_runs(["runs/fomaml", "runs/maml"], omniglot))
"""
from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from l2l_omniglot.checkpoint import load_solver
from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError, OmnimetaError
from l2l_omniglot.evaluation import PairedDifference, Score, per_task_accuracy
from l2l_omniglot.solvers import solver_label
from l2l_omniglot.training import Benchmark, RunRequest, run_training

#: What must agree for two runs to be scored on the same tasks.
TASK_KEYS = ("ways", "shots", "queries", "split", "image_size")


def _train_child(config: dict, data_root: Optional[str], out_dir: str) -> None:
    run_training(RunRequest(Path(out_dir), RunConfig.from_dict(config), force=True, data_root=data_root))


def metric_count(run_dir: Path) -> int:
    path = Path(run_dir) / "metrics.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


def train_isolated(config: RunConfig, data_root, out_dir: Path,
                   on_progress: Callable[[int], None] = lambda done: None) -> dict:
    """Train and test ``config`` in a fresh process; report iterations done while it runs."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_train_child, args=(config.to_dict(), str(data_root) if data_root else None,
                                                         str(out_dir)))
    process.start()
    while process.is_alive():
        process.join(0.5)
        on_progress(metric_count(out_dir))
    if process.exitcode != 0 or not (Path(out_dir) / "result.json").is_file():
        raise OmnimetaError(f"training {config.solver} failed (exit status {process.exitcode}); "
                            f"rerun it alone with `omnimeta run --solver {config.solver}` to see why")
    on_progress(metric_count(out_dir))
    return json.loads((Path(out_dir) / "result.json").read_text())


@dataclass
class ScoredRun:
    run_dir: Path
    config: RunConfig
    result: dict
    per_task: torch.Tensor

    @property
    def label(self) -> str:
        augment = f" +{self.config.augment}" if self.config.augment != "none" else ""
        return f"{solver_label(self.config)}{augment}"


def load_run(run_dir: Path, device="cpu") -> tuple:
    """``(config, solver)`` from a run folder's best checkpoint, for any installed solver."""
    config, solver, _ = load_solver(Path(run_dir) / "checkpoint.pt", device)
    return config, solver


def score_runs(run_dirs: list, omniglot, eval_tasks: Optional[int] = None, device: str = "cpu",
               on_progress: Callable[[int], None] = lambda done: None) -> list:
    """Score every run on the same fixed test tasks (those of the first run's task shape)."""
    runs = [(Path(d), *load_run(d, device)) for d in run_dirs]
    reference = runs[0][1]
    for run_dir, config, _ in runs[1:]:
        differ = [k for k in TASK_KEYS if getattr(config, k) != getattr(reference, k)]
        if differ:
            raise ConfigError(f"{run_dir} differs from {runs[0][0]} in {', '.join(differ)}; "
                              f"compare runs of the same task shape")
    shape = RunConfig.from_dict({**reference.to_dict(), "eval_tasks": eval_tasks or reference.eval_tasks})
    tasks = Benchmark.build(shape, omniglot, phases=("test",)).test_tasks
    scored = []
    for run_dir, config, solver in runs:
        result_path = run_dir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        scored.append(ScoredRun(run_dir, config, result, per_task_accuracy(solver, tasks, progress=on_progress)))
    return scored


def compare_rows(scored: list) -> list:
    """One row per run, with its paired difference to the best run on the same tasks."""
    best = max(scored, key=lambda run: run.per_task.mean().item())
    rows = []
    for run in scored:
        score = Score.of(run.per_task)
        difference = PairedDifference.of(run.per_task, best.per_task)
        result = run.result
        rows.append({
            "solver": run.label,
            "run": str(run.run_dir),
            "iterations": result.get("iterations", run.config.iterations),
            "train_seconds": result.get("train_seconds"),
            "iterations_per_second": result.get("iterations_per_second"),
            "val_accuracy": result.get("val_accuracy"),
            "test_accuracy": score.accuracy,
            "test_ci95": score.ci95,
            "test_tasks": score.tasks,
            "peak_rss_mb": result.get("peak_rss_mb"),
            "best": run is best,
            "diff_to_best": difference.mean,
            "diff_ci95": difference.ci95,
            "significant": difference.significant if run is not best else False,
        })
    return rows


def curves(run_dir: Path) -> dict:
    """Validation accuracy against iterations and seconds, from ``metrics.jsonl``."""
    iterations, seconds, accuracy = [], [], []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_accuracy" in record:
            iterations.append(record["iteration"])
            seconds.append(record["seconds"])
            accuracy.append(record["val_accuracy"])
    return {"iterations": iterations, "seconds": seconds, "val_accuracy": accuracy}
