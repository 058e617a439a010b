"""TensorBoard event files for every run, so ``tensorboard --logdir runs/`` shows all runs (and tuning trials).

:class:`TensorBoardLog` is a :class:`~l2l_omniglot.callbacks.RunCallbacks`
that the run lifecycle adds to rank 0 of every run with a folder
(:func:`tensorboard_log`). It writes PyTorch's ``SummaryWriter`` events into
the run folder itself, so each run is one line in TensorBoard, named by its
folder:

* ``train/loss``, ``train/accuracy`` and ``train/seconds_per_step`` (the wall
  time of the iterations since the last report, validation included) each
  iteration; ``train/learning_rate`` (the meta-optimizer's first group);
* ``val/accuracy`` at every validation;
* the run's settings as hparams (shared settings and the solver's options, as
  ``option.NAME``), against ``val/accuracy``.

TensorBoard is an optional extra (``pip install omnimeta[tensorboard]``):
without it runs write no events and nothing fails. A resumed run starts its
events at the resumed iteration (``purge_step``), so TensorBoard drops the
ones the stopped run wrote past its saved state.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from l2l_omniglot.callbacks import RunCallbacks
from l2l_omniglot.config import RunConfig

#: The scalar TensorBoard's hparams view compares runs by.
VALIDATION_TAG = "val/accuracy"
#: How TensorBoard names the event files a writer makes (``--force`` removes a replaced run's).
EVENT_FILE_PREFIX = "events.out.tfevents."


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def hparams_of(config: RunConfig) -> dict:
    """The run's settings as TensorBoard hparams: numbers, text and flags (anything else as text)."""
    settings = {key: value for key, value in config.to_dict().items() if key != "options"}
    settings.update({f"option.{key}": value for key, value in config.options.items()})
    return {key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in sorted(settings.items())}


class TensorBoardLog(RunCallbacks):
    """Writes a run's curves and settings as TensorBoard events into its folder (see the module's docstring)."""

    def __init__(self, out_dir: Path, config: RunConfig):
        self.out_dir, self.config = Path(out_dir), config
        self.writer = None
        self.trainer = None
        self._last = (0, 0.0)  # (iteration, seconds) of the last step reported

    def on_start(self, trainer) -> None:
        self.trainer = trainer
        self._last = (trainer.iteration, trainer.elapsed)

    def _open(self):
        """The writer, made at the first report: by then a new run's folder is set up (and a replaced run's events gone)."""
        if self.writer is None:
            # Imported here, not at the top: TensorBoard is optional, and importing it costs every other command.
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            start = self.trainer.iteration if self.trainer is not None else 0
            self.writer = SummaryWriter(log_dir=str(self.out_dir), purge_step=start + 1 if start else None)
            if not start:
                for summary in hparams(hparams_of(self.config), {VALIDATION_TAG: float("nan")}):
                    self.writer.file_writer.add_summary(summary)
        return self.writer

    def on_step(self, iteration: int, stats, seconds: float) -> None:
        writer = self._open()
        last_iteration, last_seconds = self._last
        writer.add_scalar("train/loss", stats.loss, iteration)
        writer.add_scalar("train/accuracy", stats.accuracy, iteration)
        writer.add_scalar("train/seconds_per_step", (seconds - last_seconds) / max(iteration - last_iteration, 1),
                          iteration)
        rate = learning_rate(self.trainer.solver) if self.trainer is not None else None
        if rate is not None:
            writer.add_scalar("train/learning_rate", rate, iteration)
        self._last = (iteration, seconds)

    def on_validation(self, iteration: int, score) -> None:
        self._open().add_scalar(VALIDATION_TAG, score.accuracy, iteration)

    def on_finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def learning_rate(solver) -> Optional[float]:
    """The meta-learning rate the solver's optimizer uses now (its first group), when it has one."""
    groups = getattr(getattr(solver, "optimizer", None), "param_groups", None)
    try:
        return float(groups[0]["lr"])
    except (TypeError, IndexError, KeyError, ValueError):
        return None


def tensorboard_log(out_dir: Optional[Path], config: RunConfig) -> Optional[TensorBoardLog]:
    """The TensorBoard log for a run in ``out_dir``; None without a folder or without TensorBoard installed."""
    return TensorBoardLog(out_dir, config) if out_dir is not None and tensorboard_available() else None
