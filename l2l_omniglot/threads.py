"""How a process spends its CPU threads: tasks in parallel, each on one torch thread.

The problem (docs/results.md, "Speed on a busy machine"). torch runs each
operation on its intra-op pool (OpenMP: GNU libgomp in the pip wheels). Our
operations are tiny (a 5-way 1-shot task's convolutions take microseconds),
so one meta-step is thousands of parallel regions, each ending at a barrier
where libgomp's threads *spin*. Once another program takes a core, one of the
pool's threads shares that core with it, and at almost every barrier the
other thread spins a whole scheduler slice waiting for it: beside one busy
process the default FO-MAML step went from 0.06 s to 11 s on the 2-core
development machine (the issue measured 0.089 s -> 9.4 s).

The policy:

* **Parallel over tasks, not inside operations.** ``TaskThreads`` runs one
  function per task on ``threads`` worker threads, each with a single torch
  thread, and returns the results in task order. The engines that adapt one
  task at a time compute each task's gradient or logits there and combine
  them in task order, so the numbers do not depend on how many workers ran
  or which worker took which task: ``--threads 1`` and ``--threads 2`` give
  the same run, bit for bit (tests/test_threads.py). A worker that shares its
  core with another program simply finishes fewer tasks; nobody waits for it
  at every operation. On a quiet machine two task workers are also *faster*
  than two intra-op threads (the tasks are too small to split well).
* **How many.** ``default_threads()``: all the cores this process may run
  on, divided among the local ranks of ``omnimeta run --nproc N``
  (``rank_threads``), at least one.
* **Intra-op threads that wait politely.** Work that cannot be split by task
  (the batched engine, whole-class pre-training) still uses ``threads``
  intra-op threads; for them ``prepare_environment()`` lowers libgomp's spin
  (``GOMP_SPINCOUNT`` = ``SPIN_COUNT``, from 300000) before torch loads, so that
  a waiting thread soon sleeps and gives the core back: beside a busy process
  that is ~3x slower instead of ~180x, for ~10% on a quiet machine. libgomp
  reads it once, when torch loads it, so it must be in the environment first:
  ``l2l_omniglot/__init__.py`` calls ``prepare_environment()`` before
  anything imports torch, and ``--nproc`` ranks inherit it. A user's own
  ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` wins.

Where the number comes from (``requested_threads``): ``--threads N`` >
``$OMNIMETA_THREADS`` > ``$OMP_NUM_THREADS`` > ``default_threads()``.

Only the standard library is imported at module level (torch inside the
functions that need it, and only after the environment is prepared), so
that this module can run before torch loads.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Mapping, MutableMapping, Optional

from l2l_omniglot.errors import ConfigError

#: The environment variable that sets the thread count when ``--threads`` is not given.
THREADS_ENV = "OMNIMETA_THREADS"

#: libgomp's spin before a waiting intra-op thread sleeps (libgomp's own default: 300000). See the module doc.
SPIN_COUNT = 1000

#: libgomp's own wait settings; when the user set either, the policy adds nothing.
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_state = {"torch_loaded_first": None, "source": None}
_pool_lock = threading.Lock()
_pool: Optional["TaskThreads"] = None


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, so ``taskset`` and cgroup cpusets count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cores: Optional[int] = None, ranks: int = 1) -> int:
    """The default thread count of one process: its share of the cores, ``max(1, cores // ranks)``.

    The threads work on different tasks (``TaskThreads``), so a busy
    neighbour slows them down by the share of the CPU it takes, not by a
    scheduler slice at every operation: one busy process beside the default
    FO-MAML run costs it less than 2x on the 2-core machine, where two intra-op
    threads lost ~180x. On a quiet machine two task threads are faster than
    today's two intra-op threads, and the result does not depend on the count.
    ``ranks``: the local processes of ``omnimeta run --nproc`` share the cores.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, not {ranks}")
    cores = available_cores() if cores is None else cores
    return max(1, cores // ranks)


def check_threads(threads) -> int:
    """``threads`` if it is a whole number >= 1, else a one-line ``ConfigError``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be a whole number >= 1, not {threads!r}")
    return threads


def rank_threads(nproc: int, requested: Optional[int] = None, cores: Optional[int] = None) -> int:
    """Threads for each of ``nproc`` local ranks: ``requested`` (``--threads``) if given, else their core share."""
    if requested is not None:
        return check_threads(requested)
    return default_threads(cores, ranks=nproc)


def rank_environment(nproc: int, requested: Optional[int] = None,
                     environ: Optional[Mapping[str, str]] = None) -> dict:
    """The environment the launcher of ``omnimeta run --nproc N`` gives each local rank.

    Each rank's thread count is ``requested`` (``--threads``, per rank) if
    given, else ``$OMNIMETA_THREADS`` or ``$OMP_NUM_THREADS`` if the user set
    one (also per rank), else its share of the cores (``cores // nproc``). It
    goes into ``OMNIMETA_THREADS`` (what ``configure_threads()`` in the rank
    reads) and ``OMP_NUM_THREADS`` (for torch before that), with the wait
    settings of ``wait_environment``.
    """
    environ = os.environ if environ is None else environ
    if requested is not None or any(environ.get(name, "").strip() for name in (THREADS_ENV, "OMP_NUM_THREADS")):
        per_rank, _ = requested_threads(requested, environ)
    else:
        per_rank = rank_threads(nproc)
    return {THREADS_ENV: str(per_rank), "OMP_NUM_THREADS": str(per_rank), **wait_environment(environ)}


def requested_threads(requested: Optional[int] = None, environ: Optional[Mapping[str, str]] = None) -> tuple:
    """``(threads, source)``: ``--threads`` > ``$OMNIMETA_THREADS`` > ``$OMP_NUM_THREADS`` > ``default_threads()``."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return check_threads(requested), "--threads"
    text = environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"${THREADS_ENV} must be a whole number >= 1, not {text!r}")
        return int(text), f"${THREADS_ENV}"
    text = environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) >= 1:  # OpenMP's own variable: what OpenMP would ignore, ignore too
        return int(text), "$OMP_NUM_THREADS"
    return default_threads(), "default"


def wait_environment(environ: Optional[Mapping[str, str]] = None) -> dict:
    """The wait settings the policy adds to ``environ``: none when the user set libgomp's own."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in WAIT_ENV):
        return {}
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}


def prepare_environment(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Add the policy's wait settings to the environment; True if they take effect in this process.

    Call it before ``import torch`` (``l2l_omniglot/__init__.py`` does):
    libgomp reads them when torch loads it. Later calls still pass them on to
    child processes (the ranks of ``--nproc``) and return False.
    """
    target = os.environ if environ is None else environ
    for name, value in wait_environment(target).items():
        target.setdefault(name, value)
    loaded = "torch" in sys.modules
    if environ is None and _state["torch_loaded_first"] is None:
        _state["torch_loaded_first"] = loaded
    return not loaded


class TaskThreads:
    """``threads`` worker threads, each with one torch thread, that map a function over tasks in task order.

    ``map(fn, items)`` calls ``fn(item)`` for every item and returns the
    results in the order of ``items``, whichever worker computed them; with
    one thread it runs them in the calling thread, one by one. The caller
    combines the results in that order, so the numbers do not depend on
    ``threads``. ``fn`` must not change shared state (compute gradients with
    ``torch.autograd.grad``, not ``.backward()`` into shared ``.grad``; see
    ``add_in_order``) and must not draw from torch's global random generator
    (the order of the draws would depend on the threads). The workers run with
    the caller's autograd mode (``torch.no_grad()`` or not) and autocast
    (:mod:`l2l_omniglot.precision`).
    """

    def __init__(self, threads: int):
        self.threads = check_threads(threads)
        self._executor = None
        if self.threads > 1:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="omnimeta-task",
                                                initializer=_one_torch_thread)

    def map(self, fn: Callable, items: Iterable) -> list:
        items = list(items)
        if self._executor is None or len(items) < 2:
            return [fn(item) for item in items]
        import torch

        # Autograd's mode and autocast (--precision bfloat16, on the CPU or a GPU) are per thread: the workers take
        # the caller's.
        grad_enabled = torch.is_grad_enabled()
        autocasts = [dict(device_type=device, dtype=torch.get_autocast_dtype(device),
                          cache_enabled=torch.is_autocast_cache_enabled())
                     for device in ("cpu", "cuda") if torch.is_autocast_enabled(device)]

        def call(item):
            with contextlib.ExitStack() as modes:
                modes.enter_context(torch.set_grad_enabled(grad_enabled))
                for autocast in autocasts:
                    modes.enter_context(torch.autocast(**autocast))
                return fn(item)

        return list(self._executor.map(call, items))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __repr__(self) -> str:
        return f"TaskThreads({self.threads})"


def add_in_order(parameters, task_gradients) -> None:
    """Add each task's gradients to ``p.grad``, task after task: what ``loss.backward()`` per task would leave.

    ``task_gradients``: per task (in task order), the tuple that
    ``torch.autograd.grad(loss / len(tasks), parameters, allow_unused=True)``
    returned (None for a parameter the task does not reach). The first task's gradient
    becomes ``p.grad`` when it is None, the later ones are added in place, as
    autograd accumulates, so the result is bit for bit that of calling
    ``backward()`` task after task on one thread.
    """
    for index, parameter in enumerate(parameters):
        for gradients in task_gradients:
            gradient = gradients[index]
            if gradient is None:
                continue
            if parameter.grad is None:
                parameter.grad = gradient.detach().clone()
            else:
                parameter.grad += gradient


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)  # OpenMP's thread count is per calling thread: this worker's ops run on it alone


def configure_threads(requested: Optional[int] = None) -> int:
    """Apply the policy to this process and return its thread count.

    ``requested`` is ``--threads`` (None when not given: then
    ``$OMNIMETA_THREADS``, ``$OMP_NUM_THREADS``, ``default_threads()``).
    Sets torch's intra-op threads of the calling thread to that count (for
    work that is not split by task) and makes ``task_threads()`` a pool of
    that many task workers. Raises ``ConfigError`` for a count below 1.
    """
    global _pool
    threads, source = requested_threads(requested)
    prepare_environment()
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with _pool_lock:
        if _pool is None or _pool.threads != threads:
            if _pool is not None:
                _pool.close()
            _pool = TaskThreads(threads)
        _state["source"] = source
    return threads


def use_threads(requested: Optional[int] = None) -> int:
    """``configure_threads(requested)`` for this process and, through ``$OMNIMETA_THREADS``, the ones it starts.

    What ``--threads N`` does: the runs that ``omnimeta compare`` trains in
    fresh processes, and each rank of ``omnimeta run --nproc``, get N threads too.
    """
    if requested is not None:
        os.environ[THREADS_ENV] = str(check_threads(requested))
    return configure_threads(requested)


def task_threads() -> TaskThreads:
    """This process's task workers (``configure_threads(None)`` first if nobody configured them)."""
    if _pool is None:
        configure_threads(None)
    return _pool


def shutdown() -> None:
    """Stop this process's task workers (the next ``task_threads()`` configures new ones)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
        _pool = None
        _state["source"] = None


def describe_threads() -> dict:
    """What ``result.json`` records about threads: the count, where it came from, and how intra-op threads wait."""
    if _pool is not None:
        threads, source = _pool.threads, _state["source"]
    else:
        threads, source = requested_threads(None)
    wait = {name: os.environ[name] for name in WAIT_ENV if name in os.environ}
    return {"threads": threads, "threads_source": source, "omp_wait": wait or "libgomp default",
            "omp_wait_in_effect": _state["torch_loaded_first"] is False}
