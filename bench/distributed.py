#!/usr/bin/env python3
"""Meta-iterations per second of data-parallel training on 1 and 2 ranks: the numbers behind docs/results.md.

    python bench/distributed.py [--iterations 40] [--meta-batch 32] [--repeats 3] [--device cpu|cuda]

Each configuration is a real ``omnimeta run`` (FO-MAML, ``--json``) and is
measured by its ``iterations_per_second``: meta-iterations over the seconds
spent in meta-training steps, all-reduces included, start-up and evaluation
excluded. The median over ``--repeats`` runs is printed, with the spread.

On the CPU the rows are 1 rank with all cores' threads, 1 rank with one
thread, and ``--nproc 2`` (one thread per rank). With ``--device cuda`` they
are 1 rank on one GPU and 2 ranks sharing that GPU over gloo (nccl refuses
two ranks on one GPU); the card is named in the title.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{model}, {os.cpu_count()} logical CPUs, no GPU used"


def configurations(device: str) -> list:
    """(label, extra run options, OMP_NUM_THREADS or None for the default)."""
    cores = str(os.cpu_count() or 1)
    if device == "cuda":
        return [("1 rank, 1 GPU", [], None),
                ("2 ranks sharing 1 GPU (gloo)", ["--nproc", "2", "--backend", "gloo"], None)]
    return [(f"1 rank x {cores} threads", [], cores),
            ("1 rank x 1 thread", [], "1"),
            ("2 ranks x 1 thread (--nproc 2)", ["--nproc", "2"], None)]


def measure(options: list, threads, args, out: Path) -> float:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        environment["OMP_NUM_THREADS"] = threads
    command = [sys.executable, "-m", "l2l_omniglot", "run", "--solver", "fomaml", "--meta-batch", str(args.meta_batch),
               "--iterations", str(args.iterations), "--val-every", str(args.iterations), "--val-tasks", "2",
               "--eval-tasks", "2", "--device", args.device, "--out", str(out), "--json", *options]
    if args.data_root:
        command += ["--data-root", args.data_root]
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout)["iterations_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    console = Console(width=200)
    console.print(f"{machine(args.device)}; torch {torch.__version__}")
    table = Table(title=f"FO-MAML, meta-batch {args.meta_batch}, {args.iterations} meta-iterations, "
                        f"median of {args.repeats} runs")
    for column in ("configuration", "meta-it/s (median)", "min - max", "vs first row"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    first = None
    with tempfile.TemporaryDirectory() as scratch:
        for index, (label, options, threads) in enumerate(configurations(args.device)):
            speeds = [measure(options, threads, args, Path(scratch) / f"{index}-{repeat}")
                      for repeat in range(args.repeats)]
            median = statistics.median(speeds)
            first = first or median
            table.add_row(label, f"{median:.2f}", f"{min(speeds):.2f} - {max(speeds):.2f}", f"{median / first:.2f}x")
            print(f"{label}: {speeds}", file=sys.stderr, flush=True)
    console.print(table)


if __name__ == "__main__":
    main()
