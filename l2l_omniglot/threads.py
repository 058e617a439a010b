"""How many torch threads a process uses, and how they wait: a policy that survives a busy machine.

torch runs each operation of a step on its intra-op thread pool (OpenMP, GNU
libgomp in the pip wheels). Our operations are small (a 5-way task's
convolutions take tens of microseconds), so a step is thousands of parallel
regions, each ending at a barrier. With libgomp's defaults a thread that has
finished its share *spins* (up to ``GOMP_SPINCOUNT`` = 300000 pause
iterations, milliseconds on this CPU) waiting for the next region. On a quiet
machine that is what makes two threads faster than one. Beside one busy
program it is a disaster: the scheduler shares a core between a spinning
pool thread and the other program in slices of milliseconds, so at almost
every region one of our threads waits a whole slice for the other, and a
meta-iteration became ~100x slower (0.089 s -> 9.4 s on the 2-core machine).

The policy (measured by ``bench/busy.py``; numbers and the decision in
docs/results.md, "Speed on a busy machine"):

* **Threads**: all the cores this process may run on (``default_threads``),
  divided among the ranks of ``omnimeta run --nproc N`` (``rank_threads``).
  This keeps today's thread count, hence today's numbers bit for bit: a
  different thread count rounds differently (e.g. the loss after 20 FO-MAML
  steps differs in the 7th digit between 1 and 2 threads).
* **Waiting**: a short spin, then sleep (``GOMP_SPINCOUNT`` =
  ``SPIN_COUNT``). A pool thread that sleeps between regions is woken by the
  kernel with priority over a program that has been running, so it gets its
  core back within microseconds instead of a slice; the short spin keeps the
  cost of back-to-back regions on a quiet machine. It does not change any
  result: only how threads wait.

libgomp reads its wait settings once, when torch loads it, so
``prepare_environment()`` must run before ``import torch``:
``l2l_omniglot/__init__.py`` calls it first thing, and ``--nproc`` ranks
inherit the environment. ``configure_threads()`` sets the thread count at
any time. A user's own ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` /
``OMNIMETA_THREADS`` / ``OMP_NUM_THREADS`` are respected.

This module imports only the standard library at import time (torch when a
function needs it), so that it can run before torch loads.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping, Optional

#: The environment variable that chooses the thread count when ``--threads`` is not given.
THREADS_ENV = "OMNIMETA_THREADS"

#: libgomp's spin count before a waiting thread sleeps (its own default: 300000). Measured, see the module doc.
SPIN_COUNT = 10000

#: The environment settings libgomp takes its wait policy from; a user's own value of either wins.
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

#: What ``prepare_environment`` found: whether torch had loaded before it ran (then its wait settings are fixed).
_state = {"prepared": False, "torch_loaded_first": None}


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask: ``taskset`` and container limits count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cores: Optional[int] = None, ranks: int = 1) -> int:
    """The default torch thread count of one process: its share of the cores, ``max(1, cores // ranks)``.

    Why all the cores and not fewer: on a quiet machine two threads are
    1.3-1.5x faster per FO-MAML step than one on this 2-core machine, and a
    busy neighbour no longer costs 100x once the threads sleep instead of spin
    while they wait (``SPIN_COUNT``, set by ``prepare_environment``): then one
    busy program costs the default at most ~2x, as it costs one thread. Keeping
    the count also keeps the numbers a run produces (a thread count rounds its
    own way). ``ranks``: the processes of ``omnimeta run --nproc`` on this
    machine share its cores, so each takes ``cores // ranks`` (at least one).
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, not {ranks}")
    cores = available_cores() if cores is None else cores
    return max(1, cores // ranks)


def rank_threads(nproc: int, requested: Optional[int] = None, cores: Optional[int] = None) -> int:
    """Threads for each of ``nproc`` local ranks: ``requested`` if given (``--threads``), else their share of the cores."""
    if requested is not None:
        return check_threads(requested)
    return default_threads(cores, ranks=nproc)


def check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from l2l_omniglot.errors import ConfigError

        raise ConfigError(f"--threads must be a whole number >= 1, not {threads!r}")
    return threads


def wait_environment(environ: Optional[Mapping[str, str]] = None) -> dict:
    """The wait settings the policy adds to ``environ``: none when the user set libgomp's own."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in WAIT_ENV):
        return {}
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}


def prepare_environment(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Put the policy's wait settings into the environment, before torch loads; True if they take effect here.

    Call it before ``import torch`` (``l2l_omniglot/__init__.py`` does). When
    torch is already loaded the settings still reach child processes (the
    ranks of ``--nproc``), but not this one: that is what the False says.
    """
    environ = os.environ if environ is None else environ
    for name, value in wait_environment(environ).items():
        environ.setdefault(name, value)
    if environ is os.environ and not _state["prepared"]:
        _state.update(prepared=True, torch_loaded_first="torch" in sys.modules)
    return "torch" not in sys.modules


def requested_threads(requested: Optional[int] = None, environ: Optional[Mapping[str, str]] = None) -> tuple:
    """(threads, where the number came from): ``requested`` > ``$OMNIMETA_THREADS`` > ``$OMP_NUM_THREADS`` > default."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return check_threads(requested), "--threads"
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = environ.get(name, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                value = text
            if name == THREADS_ENV:
                return check_threads(value), f"${name}"
            if isinstance(value, int) and value >= 1:  # OpenMP's own variable: ignore what OpenMP would ignore
                return value, f"${name}"
    return default_threads(), "default"


def configure_threads(requested: Optional[int] = None) -> int:
    """Set this process's torch thread count by the policy and return it.

    ``requested`` is ``--threads`` (None when not given); without it
    ``$OMNIMETA_THREADS``, then ``$OMP_NUM_THREADS``, then
    ``default_threads()`` decide. Raises ``ConfigError`` for a count below 1.
    Also puts the wait settings into the environment for child processes (they
    take effect in this process only if ``prepare_environment`` ran before
    torch loaded).
    """
    threads, _ = requested_threads(requested)
    prepare_environment()
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def describe(threads: Optional[int] = None) -> dict:
    """What ``result.json`` records: the thread count, where it came from, and how the threads wait."""
    import torch

    _, source = requested_threads(None)
    wait = {name: os.environ[name] for name in WAIT_ENV if name in os.environ}
    return {"threads": torch.get_num_threads() if threads is None else threads, "threads_source": source,
            "wait": wait or "libgomp default",
            "wait_in_effect": _state["torch_loaded_first"] is False}
