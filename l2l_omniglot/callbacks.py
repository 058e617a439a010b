"""What a run reports while it works: :class:`RunCallbacks`, and :class:`CallbackList` to report to several.

The command line draws its progress bars with one, a script can log, plot or
stop early with one, and the run lifecycle adds its own (the TensorBoard log
of :mod:`l2l_omniglot.tensorboard_log`); :class:`CallbackList` hands every
report to each in turn.
"""
from __future__ import annotations

import warnings


class RunCallbacks:
    """What a run reports while it works; every method is optional (override the ones you need).

    The command line draws progress bars with one of these; a script can log,
    plot or stop early (raise ``KeyboardInterrupt`` to stop and save).
    """

    def on_start(self, trainer) -> None:
        """The run is built and about to train from ``trainer.iteration`` to ``trainer.config.iterations``."""

    def on_step(self, iteration: int, stats, seconds: float) -> None:
        """Iteration ``iteration`` is done; ``seconds`` of training so far."""

    def on_validation(self, iteration: int, score) -> None:
        """The validation score after ``iteration``."""

    def on_eval_start(self, tasks: int) -> None:
        """The final test on ``tasks`` fixed tasks begins."""

    def on_eval_progress(self, done: int) -> None:
        """``done`` more test tasks are scored."""

    def on_finish(self) -> None:
        """The run ended (finished, interrupted or failed)."""

    def on_warning(self, message: str) -> None:
        """Something the user should know that does not stop the run (a resumed run's metrics have a gap).

        By default a :class:`RunWarning` through :mod:`warnings`; the command line prints ``Warning: ...``.
        """
        warnings.warn(message, RunWarning, stacklevel=2)


class RunWarning(UserWarning):
    """A resumed run's folder is not what its state says (a gap in metrics.jsonl, an edited config.json)."""


class CallbackList(RunCallbacks):
    """Several callbacks as one: each report goes to each of them, in order (a duck-typed one may lack a method)."""

    def __init__(self, callbacks: list):
        self.callbacks = [callback for callback in callbacks if callback is not None]

    def _each(self, method: str, *args) -> None:
        # A callback's stop (KeyboardInterrupt) must not keep the report from the others (a progress bar, a log):
        # every one hears it, then the stop is raised.
        stop = None
        for callback in self.callbacks:
            found = getattr(callback, method, None)
            if callable(found):
                try:
                    found(*args)
                except KeyboardInterrupt as error:
                    stop = stop or error
        if stop is not None:
            raise stop

    def on_start(self, trainer) -> None:
        self._each("on_start", trainer)

    def on_step(self, iteration: int, stats, seconds: float) -> None:
        self._each("on_step", iteration, stats, seconds)

    def on_validation(self, iteration: int, score) -> None:
        self._each("on_validation", iteration, score)

    def on_eval_start(self, tasks: int) -> None:
        self._each("on_eval_start", tasks)

    def on_eval_progress(self, done: int) -> None:
        self._each("on_eval_progress", done)

    def on_finish(self) -> None:
        self._each("on_finish")

    def on_warning(self, message: str) -> None:
        for callback in self.callbacks:
            getattr(callback, "on_warning", RunCallbacks().on_warning)(message)
