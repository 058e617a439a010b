"""Several ranks on this machine (``omnimeta run --nproc N``), started by PyTorch's own elastic launcher.

:func:`launch_local_ranks` does what ``torchrun --standalone --nproc-per-node N
--max-restarts K`` does, as a library call: the same rank variables,
rendezvous, failure detection and restarts, so a rank cannot tell whether
torchrun or omnimeta started it (see :mod:`l2l_omniglot.distributed` for what
the ranks then do together). What omnimeta adds: each rank's share of the
threads, an unshared rendezvous store so that restarts work, quiet agent logs,
and one line that names the rank that failed and how to resume.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
import uuid
from typing import Callable, Optional

from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from l2l_omniglot.distributed import STOP_SIGNALS, PeerLostError, RankError
from l2l_omniglot.errors import first_line
from l2l_omniglot.threads import rank_environment

#: Seconds a local rank that lost its peers waits for the launcher to stop it (see :func:`wait_to_be_stopped`).
SIBLING_GRACE_S = 5.0


def free_port() -> int:
    """A TCP port that nothing listens on now (for tests that need an unreachable rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def describe_exit(code: int) -> str:
    """How a rank ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def wait_to_be_stopped(error: PeerLostError, seconds: float = SIBLING_GRACE_S) -> None:
    """A local rank that lost its peers waits (at most ``seconds``) for the launcher to stop it.

    When a rank dies its peers fail in their next collective at once, often
    before the launcher's agent has noticed the death, and the agent reports
    the first failed process it finds: a peer that exited at once could be
    named instead of the rank that died. So the peer stays until the agent
    stops it (SIGTERM, which now ends the process), or leaves at once if the
    agent already asked.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    if not error.ranks.stop_requested:
        time.sleep(seconds)


@contextlib.contextmanager
def _launcher_settings(nproc: int, threads: Optional[int] = None):
    """What omnimeta sets around PyTorch's launcher, each for a reason (and undone afterwards)."""
    environment = {
        # N ranks of the default thread count would oversubscribe the cores N times over: each gets its share
        # (or --threads), with the thread policy's wait settings (l2l_omniglot.threads).
        **rank_environment(nproc, threads),
        # By default the agent serves one store for every start of the group, and a restarted group's gloo can
        # read the dead group's addresses from it and fail to connect (seen with torch 2.14; cf.
        # pytorch/pytorch#135712). Unshared, rank 0 of each start hosts a new store on a port the agent picks.
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
    }
    saved_environment = {name: os.environ.get(name) for name in environment}
    # The agent's INFO and WARNING lines, and its failure report, would bury the one line that matters. Some of
    # its modules' loggers have a level of their own (elastic's get_logger), so each is quieted, not the parent.
    quiet = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    loggers = [logging.getLogger(name) for name in quiet] + [
        logger for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.startswith(tuple(f"{prefix}." for prefix in quiet))]
    saved_levels = [logger.level for logger in loggers]
    # The agent installs its own handlers for these signals (stop the ranks, then raise) and leaves them.
    saved_handlers = {signum: signal.getsignal(signum) for signum in (*STOP_SIGNALS, signal.SIGQUIT)}
    os.environ.update(environment)
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        # The agent keeps each rank's error file in a log folder; by default a new /tmp/torchelastic_* per run.
        with tempfile.TemporaryDirectory(prefix="omnimeta-ranks-") as log_dir:
            yield DefaultLogsSpecs(log_dir=log_dir)
    finally:
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level in zip(loggers, saved_levels):
            logger.setLevel(level)
        if threading.current_thread() is threading.main_thread():  # elsewhere the agent installs none
            for signum, handler in saved_handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)


def launch_local_ranks(entrypoint: Callable, args: tuple, nproc: int, max_restarts: int = 0,
                       resume_hint: str = "", threads: Optional[int] = None) -> object:
    """Run ``entrypoint(*args)`` as ``nproc`` ranks on this machine with PyTorch's elastic launcher.

    This is what ``torchrun --standalone --nproc-per-node N --max-restarts K``
    does, as a library call (``torch.distributed.launcher.api.elastic_launch``):
    a c10d rendezvous on a free local port, the rank variables in each worker's
    environment, failure detection, and up to ``max_restarts`` restarts of the
    whole group when a rank dies (``entrypoint`` must then continue from the
    last saved state; ``TORCHELASTIC_RESTART_COUNT`` tells it which start it
    is). ``threads``: torch threads per rank (default: the rank's share of
    the cores, see :func:`l2l_omniglot.threads.rank_environment`). Ctrl-C or SIGTERM to this process is passed on to the ranks, which
    stop after the current iteration and save; the agent waits up to 30 s for
    them (``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``). Returns rank 0's return value.

    What omnimeta adds is in :func:`_launcher_settings` (threads per rank, an
    unshared rendezvous store so that restarts work, quiet agent logs) and
    here: the one line that says which rank failed and how to resume, as a
    :class:`RankError`. A rank that exits with status 2 (a user error) or
    130/143 (stopped by a signal) has printed why itself, and so has rank 0
    when this process is stopped by a signal: then the launcher only exits
    with that status.
    """
    with _launcher_settings(nproc, threads) as logs_specs:
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                              rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=max_restarts,
                              monitor_interval=0.1, start_method="spawn", logs_specs=logs_specs)
        try:
            return elastic_launch(config, entrypoint)(*args)[0]
        except SignalException as error:
            raise SystemExit(128 + int(error.sigval)) from None
        except ChildFailedError as error:
            rank, failure = error.get_first_failure()
            if failure.exitcode in (2, 130, 143):
                raise SystemExit(failure.exitcode) from None
            # An exception in the rank (a bug: it printed its traceback) is in its error file.
            raised = failure.message.get("message") if isinstance(failure.message, dict) else None
            what = f"failed ({first_line(raised)})" if raised else describe_exit(failure.exitcode)
            restarts = f" after {max_restarts} restart{'s' if max_restarts != 1 else ''}" if max_restarts else ""
            raise RankError(f"rank {rank} of {nproc} {what}{restarts}; the other ranks were stopped. "
                            f"{resume_hint}".strip()) from None
