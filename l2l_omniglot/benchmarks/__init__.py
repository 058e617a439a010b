"""Benchmarks: named sets of test tasks a saved model is scored on, found as plugins like solvers.

The protocol is :class:`~l2l_omniglot.benchmarks.base.Benchmark`; the
built-ins live one per file in this folder (``tasks``, ``lake20``, ``hw15``) and
are found, as any other package's, through the entry-point group
``omnimeta.benchmarks`` (:mod:`l2l_omniglot.benchmarks.registry`), so nothing
here imports them. ``omnimeta benchmarks`` lists them and ``omnimeta evaluate
RUN --benchmark NAME`` scores a run on one (:func:`l2l_omniglot.scoring.evaluate_run`).
"""
from __future__ import annotations

from l2l_omniglot.benchmarks.base import Benchmark, BenchmarkOptions
from l2l_omniglot.benchmarks.registry import (BENCHMARKS, ENTRY_POINT_GROUP, describe_benchmarks, make_benchmark,
                                              register_benchmark)

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkOptions", "ENTRY_POINT_GROUP", "describe_benchmarks",
           "make_benchmark", "register_benchmark"]
