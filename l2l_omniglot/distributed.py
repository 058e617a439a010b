"""Data-parallel meta-training with ``torch.distributed``: several ranks, the same run as one process.

Every rank holds the whole model. Each meta-batch's tasks are cut into one
contiguous shard per rank (:func:`task_shard`); a rank draws only its own
tasks (the stream is a function of seed, iteration and task index, so no rank
count enters it), adapts them with its solver's ``accumulate_meta_gradient``,
and the meta-gradients are summed across the ranks, each weighted by its share
of the tasks, so the result is the mean over all tasks, exactly as in one
process. Then every rank takes the same Adam step and so keeps the same
parameters. DistributedDataParallel is not used: its gradient hooks do not
follow learn2learn's ``clone()`` and ``autograd.grad``, so the all-reduce is
explicit (:meth:`Ranks.meta_train_step`).

What the ranks need of a solver is a contract of its own,
:class:`~l2l_omniglot.solvers.base.SplittableSolver`: ``model``,
``optimizer``, ``meta_parameters()`` (whose gradients are all-reduced),
``accumulate_meta_gradient`` and ``shared_state()``, the state besides the
meta-parameters that ranks keep equal after every step (batch-norm running
statistics). It is checked before a distributed run starts
(:func:`check_splittable`, :func:`check_rank_members`).

The fixed validation and test tasks are split the same way and the per-task
accuracies gathered back in task order, so a score is over exactly the tasks a
single process would use. Rank 0 alone writes files and draws progress.

A rank learns its place from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). ``omnimeta run --nproc N``
starts N local ranks with PyTorch's own elastic launcher, the one torchrun
uses (:mod:`l2l_omniglot.local_ranks`), so the same variables, rendezvous,
failure detection and restarts apply: when a rank dies the agent stops the
others and starts the group again, and each rank continues from the run
folder's last saved state. The backend is gloo on the CPU and nccl on GPUs,
one GPU per rank.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import threading
import time
from typing import Callable, Optional

import torch
import torch.distributed as dist

from l2l_omniglot.config import resolve_device
from l2l_omniglot.errors import ConfigError, OmnimetaError, first_line
from l2l_omniglot.evaluation import per_task_accuracy
from l2l_omniglot.solvers.base import SharedState, missing_rank_members
from l2l_omniglot.stats import StepStats

BACKENDS = ("auto", "gloo", "nccl")
#: Signals that ask a run to stop and save: Ctrl-C, SIGTERM from job schedulers and container runtimes, and SIGHUP
#: from a terminal that closes (an ssh session that drops).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a rank waits to reach the rendezvous, or for its peers at a collective, before it gives up.
DEFAULT_TIMEOUT_S = 120.0
#: The longest wait a user may ask for (a week): far beyond any rendezvous, and within what timedelta can hold.
MAX_TIMEOUT_S = 7 * 24 * 3600.0
#: A stop signal repeated within this many seconds is the same request: a Ctrl-C in a terminal reaches the
#: launcher and every rank, and the launcher passes it on to the ranks once more.
REPEATED_SIGNAL_S = 1.0


class RankError(OmnimetaError):
    """A failure of this rank's own (its rendezvous, a lost peer): every rank reports it, not rank 0 alone."""

    exit_code = 1
    reported_by_every_rank = True


class RendezvousError(RankError):
    """The rendezvous could not be reached in time: an address, a port or a firewall to fix."""

    exit_code = 2


class PeerLostError(RankError):
    """A collective failed: another rank is gone (killed, crashed) or the connection to it broke."""

    def __init__(self, message: str, ranks: "Ranks"):
        super().__init__(message)
        #: The ranks of this process, to tell whether it was already asked to stop.
        self.ranks = ranks


def launched_as_rank() -> bool:
    """True in a process started by torchrun or by ``omnimeta run --nproc``."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def environment_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def reports_error(error: BaseException) -> bool:
    """Whether this process prints ``error``: every rank fails alike on bad input, so rank 0 speaks for all."""
    return isinstance(error, RankError) or environment_rank() == 0


def task_shard(total: int, rank: int, world_size: int) -> range:
    """The task indices of ``rank``: contiguous, in rank order, sizes differing by at most one."""
    size, extra = divmod(total, world_size)
    first = rank * size + min(rank, extra)
    return range(first, first + size + (rank < extra))


def check_splittable(config, world_size: int, solver_class: type) -> None:
    """Refuse a run whose meta-batch cannot be split across ``world_size`` ranks."""
    if world_size > config.meta_batch:
        raise ConfigError(f"--nproc {world_size} is larger than --meta-batch {config.meta_batch}: every rank needs "
                          f"at least one task of each meta-batch; lower --nproc or raise --meta-batch")
    if world_size > 1:
        check_rank_members(solver_class, config.solver)


def check_rank_members(solver, name: str) -> None:
    """Refuse a solver (a class: its methods; a built one: also ``model`` and ``optimizer``) that ranks cannot share.

    The members are those of :class:`~l2l_omniglot.solvers.base.SplittableSolver` (docs/solvers.md).
    """
    missing = missing_rank_members(solver)
    if "accumulate_meta_gradient" in missing:
        raise ConfigError(f"the {name} solver cannot split a meta-batch across ranks: it has no per-task "
                          f"meta-gradient (accumulate_meta_gradient), so run it in one process")
    if missing:
        raise ConfigError(f"the {name} solver cannot split a meta-batch across ranks: it lacks "
                          f"{', '.join(missing)} (see docs/solvers.md, several ranks), so run it in one process")


def choose_backend(device_name: str, backend: str, local_rank: int) -> tuple:
    """``(backend, device)`` for the rank with ``local_rank``: gloo on the CPU, nccl with one GPU per rank."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("--backend nccl needs a CUDA GPU for every rank and this machine has none; "
                          "use --backend gloo (or leave --backend auto)")
    device = resolve_device(device_name)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("--backend nccl works on GPU tensors only; drop --device cpu or use --backend gloo")
    if device.type != "cuda":
        return backend, device
    gpus = torch.cuda.device_count()
    if backend == "nccl" and local_rank >= gpus:
        raise ConfigError(f"nccl needs one GPU per rank, and this node has {gpus} for at least {local_rank + 1} "
                          f"ranks; start at most {gpus} ranks per node, or share GPUs with --backend gloo")
    # Only gloo gets here with more ranks than GPUs: several ranks then share one (to measure what that costs).
    return backend, torch.device("cuda", local_rank % gpus)


class EvaluationProgress:
    """Turn rank 0's own finished tasks into an estimate of all ranks' (they run in step), never past the total."""

    def __init__(self, report: Callable[[int], None], world_size: int, total: int):
        self.report, self.world_size, self.total, self.shown = report, world_size, total, 0

    def __call__(self, done: int) -> None:
        advance = min(done * self.world_size, self.total - self.shown)
        self.shown += advance
        self.report(advance)

    def finish(self) -> None:
        self.report(self.total - self.shown)
        self.shown = self.total


class Ranks:
    """This process's place among the ranks of a run, and the few collectives the training loop needs.

    ``Ranks()`` is a single process: nothing is communicated and every method
    is what one process would do, so the training loop has one code path.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None):
        self.rank, self.world_size = rank, world_size
        #: The device the launcher gives this rank; ``None`` leaves the choice to the run's config.
        self.device = device
        #: Set on every rank, at the same iteration, once any rank was asked to stop (Ctrl-C, SIGTERM).
        self.stop_agreed = False
        self._stop_requested = False
        self._stop_requested_at = 0.0
        #: The signal that asked this process to stop (one of STOP_SIGNALS), for its exit status.
        self.stop_signal = signal.SIGINT

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- joining and leaving ---------------------------------------------------------------------------
    @classmethod
    def join(cls, device_name: str, backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> "Ranks":
        """The ranks torchrun's environment describes (a single process when there is none)."""
        if not launched_as_rank() or int(os.environ["WORLD_SIZE"]) == 1:
            return cls()
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        backend, device = choose_backend(device_name, backend, int(os.environ.get("LOCAL_RANK", rank)))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as error:
            raise RendezvousError(f"rank {rank}: could not join the {world_size} ranks at {address} within "
                                  f"{timeout_s:g} s ({first_line(error)}); check MASTER_ADDR/MASTER_PORT or "
                                  f"--rdzv-endpoint, that rank 0 is running, and raise --dist-timeout if nodes "
                                  f"start far apart") from None
        ranks = cls(rank, world_size, device)
        for signum in STOP_SIGNALS:
            signal.signal(signum, ranks._on_interrupt)
        return ranks

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            with contextlib.suppress(RuntimeError):  # a peer that is already gone has nothing left to say
                dist.destroy_process_group()

    @contextlib.contextmanager
    def stop_on_interrupt(self, immediate: bool = False):
        """While inside, Ctrl-C, SIGTERM or SIGHUP asks the loop to stop after the current iteration (:attr:`stop_agreed`).

        A ``KeyboardInterrupt`` raised at an arbitrary point can land in a
        finaliser, where Python prints and drops it, and the run goes on; a flag
        read between iterations cannot be lost. A second signal stops at once,
        and so does the first with ``immediate`` (for work with no iteration to
        finish, such as the final test). SIGTERM is how ``timeout``, Docker,
        Slurm and Kubernetes stop a job, and SIGHUP how a closed terminal does, so both are treated as Ctrl-C.
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread; signals then behave as usual
            return
        handler = self._on_interrupt_now if immediate else self._on_interrupt
        previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        """Ask every rank to stop after the same iteration, as a first Ctrl-C does (a callback's way to stop).

        In one process the loop stops after this iteration (:attr:`stop_agreed` at once); across ranks the
        request rides on the next step's all-reduce, and all ranks stop after that step.
        """
        self._stop_requested = True
        if not self.distributed:
            self.stop_agreed = True

    def _on_interrupt(self, signum, frame) -> None:
        # A rank stopped alone would leave its peers waiting in a collective; so the first signal only asks,
        # every rank stops after the same iteration (see meta_train_step), and a second one stops at once.
        if self._stop_requested:
            if time.monotonic() - self._stop_requested_at > REPEATED_SIGNAL_S:
                self.stop_signal = signal.Signals(signum)
                raise KeyboardInterrupt
            return  # the same request, passed on by the launcher (see REPEATED_SIGNAL_S)
        self.stop_signal = signal.Signals(signum)
        self._stop_requested, self._stop_requested_at = True, time.monotonic()

    def _on_interrupt_now(self, signum, frame) -> None:
        self.stop_signal = signal.Signals(signum)
        raise KeyboardInterrupt

    # -- collectives -----------------------------------------------------------------------------------
    def _collective(self, operation: Callable, *args):
        try:
            return operation(*args)
        except RuntimeError as error:
            raise PeerLostError(f"rank {self.rank}: lost contact with the other ranks ({first_line(error)}); a "
                                f"rank has probably died (see its output). The last saved state is kept: continue "
                                f"with `omnimeta run --resume RUN_DIR`", self) from None

    def agree(self, build: Callable):
        """``build()`` on every rank; if it fails on any, raise that failure on all, so that none waits alone."""
        if not self.distributed:
            return build()
        failure = built = None
        try:
            built = build()
        except OmnimetaError as error:
            failure = str(error)
        failures = [None] * self.world_size
        self._collective(dist.all_gather_object, failures, failure)
        if failures[0] is not None:
            raise ConfigError(failures[0])
        for rank, failure in enumerate(failures):
            if failure is not None:
                raise ConfigError(f"{failure} (on rank {rank})")
        return built

    def largest(self, value: int) -> int:
        """The largest ``value`` over the ranks (``value`` itself in one process)."""
        if not self.distributed:
            return value
        values = torch.tensor([value], dtype=torch.int64, device=self.device)
        self._collective(dist.all_reduce, values, dist.ReduceOp.MAX)
        return int(values.item())

    def shard(self, total: int) -> range:
        return task_shard(total, self.rank, self.world_size)

    def meta_train_step(self, solver, tasks, meta_batch: int):
        """One meta-step on this rank's ``tasks`` of a ``meta_batch``; every rank ends with the same parameters."""
        if not self.distributed:
            stats = solver.meta_train_step(tasks)
            self.stop_agreed = self._stop_requested
            return stats
        shared = solver.shared_state()
        counts_before = [count.clone() for count in shared.counted]
        solver.optimizer.zero_grad()
        local = solver.accumulate_meta_gradient(tasks)
        self._share_state(shared, counts_before)
        share = len(tasks) / meta_batch
        gradients = [p.grad for p in solver.meta_parameters() if p.grad is not None]
        # One flat buffer, one all-reduce: the sum over ranks of share x (mean over the rank's tasks) is the
        # mean over all tasks, whatever the shard sizes.
        flat = torch.cat([g.flatten() for g in gradients]) * share
        self._collective(dist.all_reduce, flat)
        self._copy_back(flat, gradients)
        # The reported loss and accuracy are global means too (float64, so one and N ranks log alike), and the
        # stop flag rides along so that all ranks agree on the iteration after which to stop.
        stats = torch.tensor([local.loss * share, local.accuracy * share, float(self._stop_requested)],
                             dtype=torch.float64, device=flat.device)
        self._collective(dist.all_reduce, stats)
        solver.optimizer.step()
        self.stop_agreed = bool(stats[2].item() > 0)
        return StepStats(stats[0].item(), stats[1].item())

    def _share_state(self, shared: SharedState, counts_before: list) -> None:
        """Every rank keeps the ranks' mean of ``shared.averaged``, and ``shared.counted`` advanced by all ranks.

        (Running statistics averaged so differ from one process's in the order of the moving-average updates
        only; the counts of normalised batches add up, as in one process.)
        """
        if shared.averaged:
            flat = torch.cat([t.flatten() for t in shared.averaged]) / self.world_size
            self._collective(dist.all_reduce, flat)
            self._copy_back(flat, shared.averaged)
        if shared.counted:
            added = torch.stack([after - before for after, before in zip(shared.counted, counts_before)])
            self._collective(dist.all_reduce, added)
            for count, before, more in zip(shared.counted, counts_before, added):
                count.copy_(before + more)

    @staticmethod
    def _copy_back(flat: torch.Tensor, tensors) -> None:
        """Cut a flat all-reduced buffer back into the ``tensors`` it was made of, in place."""
        offset = 0
        for tensor in tensors:
            tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()

    def per_task_accuracy(self, solver, tasks, progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
        """Each rank scores its shard of ``tasks``; every rank gets all accuracies, in task order."""
        if not self.distributed:
            return per_task_accuracy(solver, tasks, progress=progress)
        own = self.shard(len(tasks))
        shown = EvaluationProgress(progress, self.world_size, len(tasks)) if progress is not None else None
        local = (per_task_accuracy(solver, tasks[own.start:own.stop], progress=shown) if len(own)
                 else torch.zeros(0, dtype=torch.float64))
        # all_gather wants equal sizes: pad every shard to the largest, then cut each back to its own size.
        sizes = [len(task_shard(len(tasks), rank, self.world_size)) for rank in range(self.world_size)]
        padded = torch.zeros(max(sizes), dtype=torch.float64, device=self.device)
        padded[:len(local)] = local.to(padded.device)
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._collective(dist.all_gather, gathered, padded)
        if shown is not None:
            shown.finish()
        return torch.cat([part[:size] for part, size in zip(gathered, sizes)]).cpu()
