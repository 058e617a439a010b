"""Starting a run: on this process, as one rank of torchrun, or on N local ranks, with restarts.

:func:`run_training` is the run lifecycle that ``omnimeta run`` uses, and any
script too: it takes a :class:`RunRequest` (plain data, so it can be handed
to ranks), and either runs it here, or starts ``nproc`` local ranks
(:mod:`l2l_omniglot.local_ranks`), each of which joins the others
(:class:`~l2l_omniglot.distributed.Ranks`), builds or resumes its
:class:`~l2l_omniglot.training.Trainer` and runs it. When a rank dies the
group is restarted (up to ``max_restarts`` times) and continues from the run
folder's last saved state.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import load_omniglot
from l2l_omniglot.distributed import PeerLostError, Ranks, check_splittable, launched_as_rank
from l2l_omniglot.errors import ConfigError, OmnimetaError, as_json_value
from l2l_omniglot.local_ranks import launch_local_ranks, wait_to_be_stopped
from l2l_omniglot.run_folder import Interrupted, check_out_dir
from l2l_omniglot.run_state import load_saved_state
from l2l_omniglot.process import freeze_imports
from l2l_omniglot.solvers import SOLVERS
from l2l_omniglot.threads import configure_threads, task_threads
from l2l_omniglot.training import RunCallbacks, Trainer


@dataclass
class RunRequest:
    """Everything that starts (or continues) one run, in plain data, so it can be handed to ranks.

    ``config`` is set for a new run; ``resume`` continues ``out_dir`` with
    the config saved there. ``data_root`` of a resumed run defaults to the
    one it was started with.
    """

    out_dir: Path
    config: Optional[RunConfig] = None
    resume: bool = False
    force: bool = False
    checkpoint_every: int = 100
    data_root: Optional[str] = None
    backend: str = "auto"
    dist_timeout: float = 120.0
    #: Local ranks started by :func:`run_training` (1: this process).
    nproc: int = 1
    #: Restarts of the whole group when a local rank dies (each continues from the last saved state).
    max_restarts: int = 0
    #: torch threads of this process (of each local rank with ``nproc`` > 1); None: the thread policy's default.
    threads: Optional[int] = None
    #: False: train and validate only, never build or score test tasks (see :class:`~l2l_omniglot.training.Trainer`).
    test: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if (self.config is None) == (not self.resume):
            raise ConfigError("a run needs a config to start, or resume=True to continue one")


def _run_this_process(request: RunRequest, callbacks: Optional[RunCallbacks], load_data: Callable) -> Optional[dict]:
    """One process of a run: join the ranks (if any), build or resume the trainer, train, test.

    A restart by the elastic agent (``TORCHELASTIC_RESTART_COUNT`` > 0, after
    a rank died) continues from the run folder's last saved state, on every
    rank, and rank 0 logs it in ``RUN_DIR/restarts.jsonl``.
    """
    config = request.config if request.config is not None else load_saved_state(request.out_dir)[0]
    ranks = Ranks.join(config.device, request.backend, request.dist_timeout)
    try:
        # Rank 0 loads (or decodes) the data first, so that the others find it cached.
        omniglot = ranks.agree(lambda: load_data() if ranks.is_main else None)
        # Each node's agent counts its own restarts: under torchrun on several nodes, an agent that restarts its
        # ranks because another node's rank died (for it, a change of members) starts them with its count
        # unchanged. So a group is a restart if any of its ranks says so.
        restart = ranks.largest(int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
        # The dead group's ranks are all gone by now, so every rank sees the same state.pt. A group that died
        # before rank 0 saved this run's first state has nothing to continue (state.pt is missing, or an older
        # run's that --force is replacing): it starts again.
        resume = request.resume or (restart > 0 and (request.out_dir / "state.pt").is_file()
                                    and load_saved_state(request.out_dir)[0].to_dict() == config.to_dict())

        def build() -> Trainer:
            data = omniglot if omniglot is not None else load_data()
            if resume:
                return Trainer.resume(request.out_dir, data, request.checkpoint_every, ranks, test=request.test)
            replace = request.force or (restart > 0 and begun_by(request.out_dir, config))
            return Trainer(config, data, request.out_dir, replace, request.checkpoint_every, ranks,
                           data_root=request.data_root, test=request.test)

        trainer = ranks.agree(build)
        if restart > 0 and ranks.is_main:
            _log_restart(trainer, restart, ranks.world_size, resume)
        result = trainer.run(callbacks if ranks.is_main else None)
        return result if ranks.is_main else None  # rank 0 reports the run (and, under torchrun, prints it)
    finally:
        ranks.close()


def begun_by(out_dir: Path, config: RunConfig) -> bool:
    """Whether the folder's config.json records ``config``: a group restarted before the first state.pt may then
    start it again, replacing what its first attempt left. An older run there (which that attempt refused to
    replace without --force) keeps its own config.json, so a restart refuses it too."""
    try:
        written = json.loads((Path(out_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return written == as_json_value(config.to_dict())


def _log_restart(trainer: Trainer, restart: int, world_size: int, resumed: bool) -> None:
    """Rank 0 of a restarted group: one line on stderr, and one in ``restarts.jsonl`` when it resumed."""
    limit = os.environ.get("TORCHELASTIC_MAX_RESTARTS", "?")
    if not resumed:  # the new run's folder is set up (and restarts.jsonl cleared) when it starts
        print(f"a rank failed before the first state was saved; restart {restart} of {limit}: the {world_size} "
              f"ranks start the run again", file=sys.stderr, flush=True)
        return
    print(f"a rank failed; restart {restart} of {limit}: the {world_size} ranks continue from iteration "
          f"{trainer.iteration} (saved in {trainer.out_dir / 'state.pt'})", file=sys.stderr, flush=True)
    trainer.folder.log_restart({"restart": restart, "resumed_from_iteration": trainer.iteration,
                                "time": time.time()})


def _data_loader(request: RunRequest, callbacks: Optional[RunCallbacks]) -> Callable:
    root = request.data_root
    if root is None and request.resume:
        _, payload = load_saved_state(request.out_dir)
        root = payload["trainer"].get("data_root") or None
    progress = getattr(callbacks, "on_decode", None)
    return lambda: load_omniglot(root, progress=progress)


def _rank_main(request: RunRequest, callbacks: Optional[RunCallbacks]) -> Optional[dict]:
    """The entry point of each local rank (see :func:`run_training`): errors end the rank with their status."""
    freeze_imports()
    try:
        return _run_this_process(request, callbacks, _data_loader(request, callbacks))
    except PeerLostError as error:
        # Not this rank's failure: the launcher names the rank that died (see wait_to_be_stopped).
        wait_to_be_stopped(error)
        raise SystemExit(error.exit_code) from None
    except OmnimetaError as error:
        if getattr(error, "reported_by_every_rank", False) or int(os.environ.get("RANK", "0")) == 0:
            print(str(error) if isinstance(error, Interrupted) else f"Error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception:
        traceback.print_exc()  # a bug: the launcher names the rank and the error, this shows where
        raise


def run_training(request: RunRequest, callbacks: Optional[RunCallbacks] = None) -> Optional[dict]:
    """Run (or continue) a whole run: on this process, as one rank of torchrun, or on ``request.nproc`` local ranks.

    This is the run lifecycle ``omnimeta run`` uses, for any user script too.
    Returns ``result.json``'s dict (``None`` on ranks other than 0).
    """
    if request.nproc > 1:
        if launched_as_rank():
            raise ConfigError("--nproc starts its own ranks; under torchrun leave it out")
        config = request.config if request.config is not None else load_saved_state(request.out_dir)[0]
        check_splittable(config, request.nproc, SOLVERS[config.solver])
        if not request.resume:
            check_out_dir(request.out_dir, request.force)
        _data_loader(request, callbacks)()  # a missing data set fails here once; a first load decodes it for all
        hint = (f"The last saved state is in {request.out_dir}; continue with: "
                f"omnimeta run --resume {request.out_dir} --nproc {request.nproc}")
        return launch_local_ranks(_rank_main, (request, callbacks), request.nproc, request.max_restarts, hint,
                                  threads=request.threads)
    # A rank of --nproc finds its count in the environment the launcher gave it; a count set earlier stays.
    if request.threads is not None:
        configure_threads(request.threads)
    else:
        task_threads()
    return _run_this_process(request, callbacks, _data_loader(request, callbacks))


__all__ = ["RunRequest", "run_training"]
