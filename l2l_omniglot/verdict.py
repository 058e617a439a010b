"""Ours against the paper's number: the 95% interval, and a verdict with its rule written out.

The interval: with several seeds, Student's t over the seeds' test accuracies
(``mean +- t(0.975, n-1) * sd / sqrt(n)``), which counts the spread between
training runs; with one seed, the normal interval over its test tasks
(``1.96 * sd / sqrt(tasks)``, :mod:`l2l_omniglot.evaluation`), which counts
the test tasks' spread only. The verdict reads the interval against the
paper's number (:data:`VERDICT_RULE`), and is "not comparable" unless the
paper's whole budget was run.

Example::

    from l2l_omniglot.verdict import seed_interval, verdict
    low, high, how = seed_interval([0.97, 0.98, 0.975], per_task_ci95=[0.01, 0.01, 0.01])
    verdict(0.987, low, high, fraction_run=1.0)      # ("below", ...)
"""
from __future__ import annotations

import math
import statistics

VERDICT_RULE = ("matches: the paper's number lies inside our 95% interval; above: our whole interval lies above it; "
                "below: our whole interval lies below it; not comparable: less than the paper's full budget was run "
                "(the fraction is given), whatever the interval says.")


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (12.706 at 1, 1.96 as df grows).

    The density's integral from 0 is found by Simpson's rule and inverted by
    bisection: exact to 1e-6, and no statistics library is needed for one number.
    """
    if df < 1:
        raise ValueError("Student's t needs at least one degree of freedom")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def mass_above_zero(x: float, pieces: int = 2000) -> float:
        h = x / pieces
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, pieces))
        return h / 3 * (density(0.0) + inner + density(x))

    low, high = 0.0, 100.0
    while high - low > 1e-7:
        middle = (low + high) / 2
        low, high = (middle, high) if mass_above_zero(middle) < 0.475 else (low, middle)
    return (low + high) / 2


def seed_interval(accuracies: list, per_task_ci95: list) -> tuple:
    """``(low, high, how)``: the 95% interval of the mean test accuracy, and a sentence saying over what."""
    mean = statistics.fmean(accuracies)
    if len(accuracies) == 1:
        half = per_task_ci95[0]
        how = "one seed: the normal 95% interval over its test tasks (1.96 sd / sqrt(tasks)); it omits seed spread"
    else:
        n = len(accuracies)
        half = t_quantile_975(n - 1) * statistics.stdev(accuracies) / math.sqrt(n)
        how = f"{n} seeds: Student's t 95% interval over the seeds' test accuracies (t = {t_quantile_975(n - 1):.3f})"
    return mean - half, mean + half, how


def verdict(paper: float, low: float, high: float, fraction_run: float) -> tuple:
    """``(word, sentence)`` by :data:`VERDICT_RULE`."""
    where = ("inside" if low <= paper <= high else "below" if paper < low else "above")
    interval = f"[{low:.4f}, {high:.4f}]"
    if fraction_run < 1:
        return ("not comparable", f"only {fraction_run * 100:.3g}% of the paper's budget was run; so far the paper's "
                                  f"{paper:.4f} lies {where} our interval {interval}")
    word = {"inside": "matches", "below": "above", "above": "below"}[where]
    return word, f"the paper's {paper:.4f} lies {where} our interval {interval}"
