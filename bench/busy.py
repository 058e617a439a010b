#!/usr/bin/env python3
"""Speed beside busy programs: the FO-MAML meta-train step and test-time adaptation, old and new thread policy.

    python bench/busy.py [--busy 0,1,2] [--repeats 2] [--iterations 60] [--eval-tasks 20]
                         [--old-rev REV | --old-root DIR] [--new-root DIR] [--variant NAME=TREE:VAR=VALUE,...]
                         [--run-args ARGS] [--nice N] [--json OUT] [--quick]

For each repeat, for 0, 1 and 2 busy processes, and for each policy in turn
(the order rotating every repeat), it starts the busy processes, runs

    omnimeta run --solver fomaml --iterations 60 --val-every 1000 --val-tasks 5 --eval-tasks 20
                 --seed 1 --device cpu --json --out TMP

(as ``python -m l2l_omniglot`` in the policy's source tree; ``--run-args``
adds options, e.g. ``--engine batched``), stops the busy
processes, and reads ``step_seconds`` / iterations (seconds per meta-train
step) and ``eval_seconds`` / test tasks (seconds of test-time adaptation and
prediction per task) from ``result.json``. The policies:

* ``old``: the code before the thread policy (``--old-rev``, by default
  commit 68510e7, extracted with ``git archive``): torch's default of one
  intra-op thread per core, tasks one after the other, libgomp's default spin.
* ``new``: this checkout (or ``--new-root``) with its defaults: no thread
  setting is passed, so what the code chooses by itself is what is measured.
* ``--variant NAME=TREE:VAR=VALUE,...`` (repeatable): the ``old`` or ``new``
  tree run with these environment variables, e.g. the candidates of
  docs/results.md: ``old-1-thread=old:OMP_NUM_THREADS=1``,
  ``old-passive=old:OMP_WAIT_POLICY=PASSIVE``, ``old-spin-1000=old:GOMP_SPINCOUNT=1000``,
  ``new-1-thread=new:OMNIMETA_THREADS=1``.

A busy process is a pure-Python loop, started in a session of its own as an
unrelated program would be (with Linux's autogroup scheduling each session is
a scheduling group of its own; a neighbour in another group is what stalled
the old policy worst), and it exits with the bench. Beside busy processes the old
policy's step can take ~10 s, so there it runs ``--slow-iterations`` steps
and ``--slow-eval-tasks`` test tasks (per-step and per-task times stay
comparable).

Protection from other users of the machine: each measurement records the
CPU that processes outside the bench used meanwhile ("others", in cores, from
/proc/stat), and ``--nice -20`` (root) runs the bench, its runs and its busy
processes in scheduling groups of raised priority, so that others' work takes
little from any of them while the busy processes still compete with the run
on equal terms. The table reports the median over repeats and the range.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_REV = "68510e7"  # the last commit before the thread policy: torch's default threads, tasks one by one
POLICIES = ("old", "new")
CLEAN_ENV = ("OMNIMETA_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- CPU accounting -------------------------------------------------------------------------------------
def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICKS


def process_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def children_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


# -- priority -------------------------------------------------------------------------------------------
def raise_priority(nice: int) -> str:
    """Put this process in a scheduling group of its own at ``nice``; returns what was done, for the report."""
    autogroup = Path("/proc/self/autogroup")
    done = []
    try:
        os.setsid()
        done.append("own session")
    except OSError:
        pass  # already a session leader
    if autogroup.exists():
        try:
            autogroup.write_text(str(nice))
            done.append(f"autogroup nice {nice}")
        except OSError as error:
            return f"could not raise the priority ({error.strerror}); measured at normal priority"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        done.append(f"nice {nice}")
    except (OSError, AttributeError) as error:
        return f"could not raise the priority ({getattr(error, 'strerror', error)}); measured at normal priority"
    return ", ".join(done)


def busy_code(parent: int, nice) -> str:
    """A pure-Python loop that stops when ``parent`` (the bench) is gone."""
    lines = ["import os, pathlib"]
    if nice is not None:
        lines.append(f"try:\n    pathlib.Path('/proc/self/autogroup').write_text({str(nice)!r})\n"
                     "except OSError:\n    pass")
    lines.append(f"while os.getppid() == {parent}:\n    for _ in range(100000):\n        pass")
    return "\n".join(lines)


def start_busy(count: int, nice) -> list:
    return [subprocess.Popen([sys.executable, "-c", busy_code(os.getpid(), nice)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def stop_busy(processes: list) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


# -- one measurement ------------------------------------------------------------------------------------
def run_command(iterations: int, eval_tasks: int, val_tasks: int, data_root, out: Path, extra=()) -> list:
    command = [sys.executable, "-m", "l2l_omniglot", "run", "--solver", "fomaml", "--iterations", str(iterations),
               "--val-every", "1000", "--val-tasks", str(val_tasks), "--eval-tasks", str(eval_tasks), "--seed", "1",
               "--device", "cpu", *extra, "--json", "--out", str(out), "--force"]
    if data_root:
        command += ["--data-root", str(data_root)]
    return command


def measure(root: Path, busy: int, iterations: int, eval_tasks: int, args, out: Path, settings=None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    environment.pop("PYTHONPATH", None)
    environment.update(settings or {})
    command = run_command(iterations, eval_tasks, args.val_tasks, args.data_root, out, shlex.split(args.run_args))
    processes = start_busy(busy, args.nice)
    try:
        time.sleep(0.5)  # let the busy processes get going
        machine_before, busy_before = machine_busy_seconds(), sum(process_seconds(p.pid) for p in processes)
        children_before, start = children_seconds(), time.perf_counter()
        finished = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True,
                                  timeout=args.timeout)
        wall = time.perf_counter() - start
        run_cpu = children_seconds() - children_before
        machine_after, busy_after = machine_busy_seconds(), sum(process_seconds(p.pid) for p in processes)
    finally:
        stop_busy(processes)
    if finished.returncode != 0:
        raise SystemExit(f"bench/busy.py: the run in {root} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    others = None
    if machine_before is not None:
        others = max(0.0, (machine_after - machine_before) - (busy_after - busy_before) - run_cpu) / wall
    return {"step_s": result["step_seconds"] / iterations, "eval_s": result["eval_seconds"] / eval_tasks,
            "iterations": iterations, "eval_tasks": eval_tasks, "wall_s": round(wall, 2),
            "run_cpu_cores": round(run_cpu / wall, 2), "busy_cpu_cores": round((busy_after - busy_before) / wall, 2),
            "others_cpu_cores": None if others is None else round(others, 2),
            "threads": result.get("threads"), "test_accuracy": result["test_accuracy"]}


# -- source trees ---------------------------------------------------------------------------------------
def extract(rev: str, into: Path) -> Path:
    """``git archive REV`` of this repository, unpacked into ``into``."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"bench/busy.py: cannot extract the old code ({rev}) with git archive: "
                         f"{archive.stderr.decode(errors='replace').strip()}; pass --old-root DIR instead")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


# -- report ---------------------------------------------------------------------------------------------
def summarize(rows: list) -> list:
    summary = []
    names = list(dict.fromkeys(r["policy"] for r in rows))
    keys = sorted({(r["policy"], r["busy"]) for r in rows}, key=lambda k: (names.index(k[0]), k[1]))
    for policy, busy in keys:
        mine = [r for r in rows if r["policy"] == policy and r["busy"] == busy]
        entry = {"policy": policy, "busy": busy, "repeats": len(mine)}
        for name in ("step_s", "eval_s"):
            values = [r[name] for r in mine]
            entry[name] = statistics.median(values)
            entry[f"{name}_range"] = [min(values), max(values)]
        others = [r["others_cpu_cores"] for r in mine if r["others_cpu_cores"] is not None]
        entry["others_cpu_cores_max"] = max(others) if others else None
        summary.append(entry)
    for entry in summary:
        quiet = next((e for e in summary if e["policy"] == entry["policy"] and e["busy"] == 0), None)
        old_quiet = next((e for e in summary if e["policy"] == "old" and e["busy"] == 0), None)
        for name in ("step_s", "eval_s"):
            entry[f"{name}_x_quiet"] = entry[name] / quiet[name] if quiet else None
            entry[f"{name}_x_old_quiet"] = entry[name] / old_quiet[name] if old_quiet else None
    return summary


def ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(summary: list) -> str:
    lines = ["| policy | busy processes | meta-train step s (median, range) | x own quiet | x old quiet "
             "| test-time adaptation s/task (median, range) | x own quiet | others' CPU (max, cores) |",
             "|---|---|---|---|---|---|---|---|"]
    for e in summary:
        step_lo, step_hi = e["step_s_range"]
        eval_lo, eval_hi = e["eval_s_range"]
        others = "-" if e["others_cpu_cores_max"] is None else f"{e['others_cpu_cores_max']:.2f}"
        lines.append(f"| {e['policy']} | {e['busy']} | {e['step_s']:.3f} ({step_lo:.3f}-{step_hi:.3f}) "
                     f"| {ratio(e['step_s_x_quiet'])} | {ratio(e['step_s_x_old_quiet'])} "
                     f"| {e['eval_s']:.3f} ({eval_lo:.3f}-{eval_hi:.3f}) | {ratio(e['eval_s_x_quiet'])} | {others} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", default="0,1,2", help="Comma-separated counts of busy processes [0,1,2].")
    parser.add_argument("--repeats", type=int, default=2, help="Rounds over every (busy, policy) [2].")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--eval-tasks", type=int, default=20)
    parser.add_argument("--val-tasks", type=int, default=5)
    parser.add_argument("--slow-iterations", type=int, default=5,
                        help="Iterations of the old policy beside busy processes (~10 s a step) [5].")
    parser.add_argument("--slow-eval-tasks", type=int, default=3,
                        help="Test tasks of the old policy beside busy processes [3].")
    parser.add_argument("--policies", default="old,new", help="Which of old,new to measure [old,new].")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=TREE:VAR=VALUE,...",
                        help="Also measure the old or new tree with these environment variables (repeatable).")
    parser.add_argument("--old-rev", default=OLD_REV, help=f"Commit with the old policy [{OLD_REV}].")
    parser.add_argument("--old-root", default=None, help="A source tree with the old policy, instead of --old-rev.")
    parser.add_argument("--new-root", default=None, help="A source tree with the new policy [this checkout].")
    parser.add_argument("--nice", type=int, default=None,
                        help="Run everything in scheduling groups of this niceness (e.g. -20; needs root).")
    parser.add_argument("--run-args", default="", help="More options for every run, e.g. '--engine batched'.")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--timeout", type=float, default=1800, help="Seconds one run may take [1800].")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the numbers to this file.")
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 0 and 1 busy, 1 repeat, 3 iterations, 2 test tasks (1 and 1 for old+busy).")
    args = parser.parse_args()
    if args.quick:
        args.busy, args.repeats, args.iterations, args.eval_tasks, args.val_tasks = "0,1", 1, 3, 2, 2
        args.slow_iterations, args.slow_eval_tasks = 1, 1
    busy_counts = [int(b) for b in args.busy.split(",")]
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; use {','.join(POLICIES)}")
    variants = {}  # name -> (tree, environment)
    for text in args.variant:
        name, _, rest = text.partition("=")
        tree, _, settings = rest.partition(":")
        pairs = [pair.partition("=") for pair in settings.split(",") if pair]
        if not name or name in POLICIES or name in variants or tree not in POLICIES or any(not p[1] for p in pairs):
            parser.error(f"--variant {text!r}: write NAME=TREE:VAR=VALUE,... with TREE old or new and a new NAME")
        variants[name] = (tree, {key: value for key, _, value in pairs})
    policies += list(variants)
    priority = raise_priority(args.nice) if args.nice is not None else "normal priority"

    scratch = Path(tempfile.mkdtemp(prefix="omnimeta-busy-"))
    try:
        roots = {"new": Path(args.new_root).resolve() if args.new_root else REPO}
        if "old" in policies or any(tree == "old" for tree, _ in variants.values()):
            roots["old"] = Path(args.old_root).resolve() if args.old_root else extract(args.old_rev, scratch / "old")
        rows = []
        for repeat in range(args.repeats):
            order = policies[repeat % len(policies):] + policies[:repeat % len(policies)]
            for busy in busy_counts:
                for policy in order:
                    tree, settings = variants.get(policy, (policy, {}))
                    slow = policy == "old" and busy > 0
                    iterations = args.slow_iterations if slow else args.iterations
                    eval_tasks = args.slow_eval_tasks if slow else args.eval_tasks
                    row = {"policy": policy, "busy": busy, "repeat": repeat,
                           **measure(roots[tree], busy, iterations, eval_tasks, args,
                                     scratch / f"run-{len(rows)}", settings)}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = summarize(rows)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
               f"{platform.python_version()}, {platform.system()} {platform.release()}")
    command = " ".join(run_command(args.iterations, args.eval_tasks, args.val_tasks, args.data_root, Path("TMP"),
                                   shlex.split(args.run_args))[3:])
    print(f"omnimeta beside busy processes — {machine}; {priority}; {args.repeats} repeat(s); "
          f"old = {args.old_root or args.old_rev}, new = {args.new_root or 'this checkout'}")
    print(f"command: omnimeta {command}")
    print()
    print(markdown(summary))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "machine": machine, "priority": priority, "old": args.old_root or args.old_rev,
            "new": args.new_root or "this checkout", "command": command, "repeats": args.repeats,
            "variants": {name: {"tree": tree, "environment": env} for name, (tree, env) in variants.items()},
            "rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
