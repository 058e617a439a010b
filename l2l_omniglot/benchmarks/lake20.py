"""``lake20``: Lake et al.'s 20 runs of a 20-way one-shot problem (``all_runs.zip`` beside the Omniglot archives).

Scored as an error rate per run, next to the human error of Lake et al.
(2015). Its 200 characters come from the evaluation set; a model that saw any
of them is refused (the ``lake_runs`` guard of :mod:`l2l_omniglot.leaks`).
"""
from __future__ import annotations

from rich.table import Table

from l2l_omniglot.benchmarks.base import Benchmark
from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import resolve_root
from l2l_omniglot.data.testsets import read_lake_runs
from l2l_omniglot.evaluation import HUMAN_LAKE20_ERROR, t_half_width95


class Lake20Benchmark(Benchmark):
    name = "lake20"
    description = "Lake's 20-way one-shot runs (all_runs.zip next to the Omniglot archives), as error rates."
    about = "20 fixed 20-way one-shot runs"
    leak_guard = "lake_runs"

    def __init__(self, options=None):
        super().__init__(options)
        self.run_names: list = []

    def items(self, config: RunConfig, omniglot):
        runs = read_lake_runs(resolve_root(omniglot.root) / "all_runs.zip", config.image_size)
        self.run_names = runs.names
        return runs.tasks

    def score(self, per_task, items, config: RunConfig) -> dict:
        errors = {name: 1.0 - float(accuracy) for name, accuracy in zip(self.run_names, per_task)}
        # 20 runs are too few for the normal approximation: the interval over them is Student's t (19 df).
        error = 1.0 - per_task.double()
        return {"per_run_error": errors, "error": error.mean().item(), "error_ci95": t_half_width95(error),
                "interval": f"95% over the {len(errors)} runs, Student's t with {len(errors) - 1} df",
                "human_error": HUMAN_LAKE20_ERROR, "runs": len(errors)}

    @classmethod
    def show(cls, report: dict, source: str) -> list:
        table = Table(title=f"Lake's 20-way one-shot runs: {report['label']} ({source})")
        table.add_column("run")
        table.add_column("error", justify="right")
        for name, error in report["per_run_error"].items():
            table.add_row(name, f"{error:.1%}")
        table.add_row("[bold]overall", f"[bold]{report['error']:.1%} ± {report['error_ci95']:.1%}")
        if report.get("interval"):
            table.caption = f"±: {report['interval']}"
        table.add_row("human (Lake et al. 2015)", f"{report['human_error']:.1%}")
        return [table]
