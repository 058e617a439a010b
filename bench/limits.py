#!/usr/bin/env python3
"""Every solver's step against this CPU's own limits, measured in the same run.

    python bench/limits.py [--repeats 20] [--test-tasks 16] [--threads N] [--old] [--precision bfloat16]
                           [--data-root DIR] [--json OUT] [--quick]

For every solver and engine at its defaults (transfer; FO-MAML with the
``l2l``, ``batched`` and ``grouped`` engines, MAML with ``l2l`` and
``batched``; ANIL; ProtoNet) it reports:

* **FLOPs** of one meta-train step and of one test task (adaptation and
  prediction), counted by ``torch.utils.flop_counter.FlopCounterMode``. The
  ``l2l`` engine runs tasks on task threads, which a counter on the main
  thread does not see, so every count is taken with the task threads set to
  one (:func:`l2l_omniglot.threads.configure_threads`): the same operations,
  on the main thread.
* **Seconds** per meta-train step and per test task: best of ``--repeats``
  rounds in which all contestants take turns (the order rotating), so a busy
  neighbour slows them alike and the best round is the least disturbed one.
* **GFLOP/s** (counted FLOPs over the best time) and the **ceilings** measured
  in the same run: a 2048x2048 matrix product in float32 and bfloat16, and
  the step's own convolutions alone. The convolutions are recorded while
  counting (every ``aten.convolution`` and ``aten.convolution_backward`` the
  step dispatches, with its shapes, strides, groups and memory layout, under
  ``vmap`` the batched ones) and replayed on random tensors of the same
  shapes, in float32 and in bfloat16, forward and backward, best of repeats:
  the time the step would take if it did nothing but its convolutions.
  ``step / conv`` is the step's time over that time in the precision the
  step computes in.
* ``--old``: every contestant is timed twice, today's code path and the one
  before issue #25, interleaved in the same rounds, with the speed-up old /
  new. In float32 the meta-train steps are unchanged (old = new, which shows
  the noise); at test time the old path adapts with the training engine
  (``solver.test_engine = solver.engine``: the l2l engine task by task, or the
  batched engine's ``vmap``) instead of the grouped engine.
* ``--precision bfloat16``: the new path computes as ``omnimeta run
  --precision bfloat16`` does (autocast, channels-last network); the old one
  stays float32, so old / new is what the option buys. FLOPs are counted on
  the new path (the same operations in either precision).

``--profile N`` also prints, per contestant, the N operations that take the
most time (``torch.profiler``, self CPU time) in one step and in one predict
call: where the time goes beside the convolutions.

``--quick`` is a smoke run: 1 repeat, 1 test task, meta-batches of 2 and 2
test-time steps (so its numbers are not the defaults').
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch
from rich.console import Console
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

from l2l_omniglot.precision import PRECISIONS, computing_in

#: (label, solver, overrides): every solver at its defaults, the MAML family with both engines.
CONTESTANTS = (
    ("transfer", "transfer", {}),
    ("fomaml l2l", "fomaml", {"engine": "l2l"}),
    ("fomaml batched", "fomaml", {"engine": "batched"}),
    ("fomaml grouped", "fomaml", {"engine": "grouped"}),
    ("maml l2l", "maml", {"engine": "l2l"}),
    ("maml batched", "maml", {"engine": "batched"}),
    ("anil", "anil", {}),
    ("protonet", "protonet", {}),
)

CONVOLUTIONS = {torch.ops.aten.convolution.default, torch.ops.aten._convolution.default,
                torch.ops.aten.convolution_backward.default}


class ConvolutionRecorder(TorchDispatchMode):
    """Records every convolution (forward or backward) dispatched under it: the op, and its arguments' layout."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CONVOLUTIONS:
            describe = lambda a: ("tensor", tuple(a.shape), tuple(a.stride()), a.dtype) if isinstance(  # noqa: E731
                a, torch.Tensor) else a
            self.calls.append((func, tree_map(describe, list(args)), tree_map(describe, kwargs)))
        return func(*args, **kwargs)


def conv_flop(calls: list) -> float:
    with FlopCounterMode(display=False) as counter:
        replay(materialised(calls, torch.float32))
    return counter.get_total_flops()


def materialised(calls: list, dtype: torch.dtype) -> list:
    """Random tensors of each recorded call's shapes and strides (so channels-last stays channels-last)."""
    def make(a):
        if isinstance(a, tuple) and len(a) == 4 and a[0] == "tensor":
            _, shape, stride, recorded_dtype = a
            # Filled through a flat storage: a recorded gradient may be expanded (stride 0), and a view
            # whose elements overlap cannot be written in place.
            elements = 1 + sum((size - 1) * step for size, step in zip(shape, stride)) if all(shape) else 0
            storage = torch.empty(elements, dtype=dtype if recorded_dtype.is_floating_point else recorded_dtype)
            storage.normal_() if recorded_dtype.is_floating_point else storage.zero_()
            return storage.as_strided(shape, stride)
        return a

    is_leaf = lambda a: isinstance(a, tuple) and len(a) == 4 and a[0] == "tensor"  # noqa: E731
    return [(func, tree_map(make, args, is_leaf=is_leaf), tree_map(make, kwargs, is_leaf=is_leaf))
            for func, args, kwargs in calls]


def replay(materialised_calls: list) -> None:
    for func, args, kwargs in materialised_calls:
        func(*args, **kwargs)


def best_seconds(fn, repeats: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(dtype: torch.dtype, repeats: int, size: int = 2048) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    if dtype == torch.bfloat16 and not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        # Without AVX-512 (BF16) one bfloat16 product of this size takes a minute: time one, no warm-up.
        return 2 * size ** 3 / best_seconds(lambda: torch.mm(a, b), 1, warm_up=False) / 1e9
    return 2 * size ** 3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


@contextlib.contextmanager
def one_task_thread():
    """Task threads off: the l2l engine's tasks run on the calling thread, where a FLOP counter sees them."""
    from l2l_omniglot.threads import configure_threads, task_threads

    threads = task_threads().threads
    configure_threads(1)
    try:
        yield
    finally:
        configure_threads(threads)


def use_old_paths(solver) -> None:
    """The code path before issue #25: test tasks adapted by the training engine (see the module docstring)."""
    if hasattr(solver, "test_engine"):
        solver.test_engine = solver.engine


class Contestant:
    """One solver configuration: its step and its test-time predict on fixed tasks, old or new code path."""

    def __init__(self, label: str, solver: str, overrides: dict, omniglot, test_tasks: int, fast: bool,
                 quick: bool = False, precision: str = "float32"):
        from l2l_omniglot import SOLVERS, make_solver, make_split, phase_samplers, resolve_config
        from l2l_omniglot.run_tasks import RunTasks

        self.label, self.fast = label, fast
        self.computing = lambda: computing_in(precision, "cpu")
        if quick:
            declared = {spec.name for spec in SOLVERS[solver].Options.specs()}
            overrides = {**overrides, "meta_batch": 2, **({"test_inner_steps": 2} if "test_inner_steps" in declared
                                                         else {})}
        config = resolve_config(solver, device="cpu", precision=precision, **overrides)
        benchmark = RunTasks.build(config, omniglot, phases=("train",))
        torch.manual_seed(0)
        self.solver = make_solver(config, benchmark.num_train_classes, "cpu")
        if not fast:
            use_old_paths(self.solver)
        sampler = benchmark.samplers["train"]
        self.batches = [sampler.sample(0, iteration, config.meta_batch) for iteration in range(1, 4)]
        test = phase_samplers(omniglot, make_split(config.split, omniglot), config.ways, config.shots,
                              config.queries, phases=("test",))["test"]
        self.test_tasks = test.sample(0, 1, test_tasks)
        self.rounds = 0

    def step(self) -> None:
        with self.computing():
            self.solver.meta_train_step(self.batches[self.rounds % len(self.batches)])
        self.rounds += 1

    def predict(self) -> None:
        with self.computing():
            self.solver.predict(self.test_tasks)

    def count(self) -> dict:
        """FLOPs of a step and of one test task, and the step's convolutions, all on the calling thread."""
        with one_task_thread():
            recorder = ConvolutionRecorder()
            with FlopCounterMode(display=False) as counter, recorder, self.computing():
                self.solver.meta_train_step(self.batches[0])
            step_flop = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter, self.computing():
                self.solver.predict(self.test_tasks[:1])
        return {"step_flop": step_flop, "test_task_flop": counter.get_total_flops(), "convolutions": recorder.calls}


def profile_table(fn, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        fn()
    return trace.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def interleaved_best(functions: dict, repeats: int) -> tuple:
    """``(best, timed)``: each function's best seconds over ``repeats`` rounds, taking turns, the order rotating,
    after one warm-up round; and how many calls of each were timed."""
    names = list(functions)
    best = {name: float("inf") for name in names}
    timed = dict.fromkeys(names, 0)
    for round_index in range(repeats + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name]()
            if round_index:
                best[name] = min(best[name], time.perf_counter() - start)
                timed[name] += 1
    return best, timed


def markdown(rows: list, ceilings: dict, old: bool, precision: str = "float32") -> str:
    """The table; ``step/conv`` divides by the convolutions' time in the precision the new path computes in."""
    own = "conv_bf16_s" if precision == "bfloat16" else "conv_fp32_s"
    columns = ["solver (defaults)", "GFLOP/step", "s/step", "GFLOP/s", "conv fp32 s", "conv bf16 s",
               "step/conv" + (" bf16" if precision == "bfloat16" else ""),
               "GFLOP/test task", "s/test task"]
    if old:
        columns[3:3] = ["old s/step", "old/new"]
        columns += ["old s/test task", "old/new test"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row["label"], f"{row['step_gflop']:.2f}", f"{row['step_s']:.4f}"]
        if old:
            cells += [f"{row['old_step_s']:.4f}", f"{row['old_step_s'] / row['step_s']:.2f}x"]
        cells += [f"{row['step_gflop'] / row['step_s']:.0f}", f"{row['conv_fp32_s']:.4f}", f"{row['conv_bf16_s']:.4f}",
                  f"{row['step_s'] / row[own]:.2f}", f"{row['test_task_gflop']:.3f}",
                  f"{row['test_task_s']:.4f}"]
        if old:
            cells += [f"{row['old_test_task_s']:.4f}", f"{row['old_test_task_s'] / row['test_task_s']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Ceilings (same run, best of repeats; CPU capability {ceilings['cpu_capability']}): "
                 f"{ceilings['matmul_size']}² matmul {ceilings['matmul_fp32']:.0f} GFLOP/s fp32, "
                 f"{ceilings['matmul_bf16']:.1f} GFLOP/s bf16; each step's own convolutions alone: "
                 + ", ".join(f"{r['label']} {r['conv_gflop'] / r['conv_fp32_s']:.0f} fp32 / "
                             f"{r['conv_gflop'] / r['conv_bf16_s']:.0f} bf16 GFLOP/s" for r in rows) + ".")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="Timed rounds (after a warm-up); the best counts.")
    parser.add_argument("--test-tasks", type=int, default=8, help="Test tasks per timed predict call.")
    parser.add_argument("--threads", type=int, default=None, help="as omnimeta run --threads")
    parser.add_argument("--solvers", default=None, help="Comma-separated labels (default: all), e.g. 'anil,protonet'.")
    parser.add_argument("--old", action="store_true", help="Also time the code path before issue #25, interleaved.")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="What the new code path computes in (as omnimeta run --precision); old: float32.")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Also print each contestant's N costliest operations (torch.profiler).")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the numbers to this file.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 repeat, 1 test task, small settings.")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.test_tasks = 1, 1
    from l2l_omniglot import load_omniglot
    from l2l_omniglot.threads import use_threads

    threads = use_threads(args.threads)
    console = Console(width=200)
    omniglot = load_omniglot(args.data_root)
    chosen = [c for c in CONTESTANTS if args.solvers is None or c[0] in args.solvers.split(",")]
    variants = {"new": True, "old": False} if args.old else {"new": True}
    contestants = {(label, variant): Contestant(label, solver, overrides, omniglot, args.test_tasks, fast,
                                                args.quick, args.precision if fast else "float32")
                   for label, solver, overrides in chosen for variant, fast in variants.items()}
    counts = {label: contestants[(label, "new")].count() for label, _, _ in chosen}

    steps, timed_steps = interleaved_best({key: c.step for key, c in contestants.items()}, args.repeats)
    tests, timed_tests = interleaved_best({key: c.predict for key, c in contestants.items()}, max(1, args.repeats // 5))
    size = 256 if args.quick else 2048
    ceilings = {"matmul_fp32": matmul_gflops(torch.float32, args.repeats, size),
                "matmul_bf16": matmul_gflops(torch.bfloat16, args.repeats, size),
                "matmul_size": size, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    rows = []
    for label, _, _ in chosen:
        calls = counts[label]["convolutions"]
        conv = {dtype: best_seconds(lambda made=materialised(calls, dtype): replay(made), args.repeats)
                for dtype in (torch.float32, torch.bfloat16)}
        row = {"label": label, "step_gflop": counts[label]["step_flop"] / 1e9, "step_s": steps[(label, "new")],
               "test_task_gflop": counts[label]["test_task_flop"] / 1e9,
               "test_task_s": tests[(label, "new")] / args.test_tasks,
               "conv_gflop": conv_flop(calls) / 1e9, "conv_fp32_s": conv[torch.float32],
               "conv_bf16_s": conv[torch.bfloat16], "convolution_calls": len(calls),
               "timed_steps": timed_steps[(label, "new")], "timed_predicts": timed_tests[(label, "new")]}
        if args.old:
            row.update(old_step_s=steps[(label, "old")], old_test_task_s=tests[(label, "old")] / args.test_tasks,
                       old_timed_steps=timed_steps[(label, "old")])
        rows.append(row)
    machine = (f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
               f"new path in {args.precision}, "
               f"{args.repeats} interleaved rounds, best of them; test: {args.test_tasks} tasks per predict call")
    table = markdown(rows, ceilings, args.old, args.precision)
    console.print(f"omnimeta limits — {machine}")
    console.print(table, markup=False, highlight=False)
    for label, _, _ in chosen if args.profile else ():
        contestant = contestants[(label, "new")]
        console.print(f"\n{label}: one meta-train step\n" + profile_table(contestant.step, args.profile), markup=False,
                      highlight=False)
        console.print(f"{label}: one predict call ({args.test_tasks} tasks)\n"
                      + profile_table(contestant.predict, args.profile), markup=False, highlight=False)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine, "ceilings": ceilings, "rows": rows,
                                                   "table": table}, indent=2))


if __name__ == "__main__":
    main()
