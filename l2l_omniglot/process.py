"""The first step of every omnimeta process: the command line, each worker of ``tune --workers``, each
training process of ``compare``.

:func:`freeze_imports` hides what the imports made from the garbage collector. torch, torchvision and
learn2learn leave over a million objects that live as long as the process; each full collection walks all
of them again, and so does the collection at exit, which alone took 0.9 s of the 3.8 s that
``omnimeta --help`` needed on the development machine (2.8 s frozen). Objects made after the call are
collected as usual.

learn2learn (with torchvision) is imported later, when a command first builds tasks
(:mod:`l2l_omniglot._learn2learn`); :func:`freeze_late_imports` freezes what that import made, so that a
training process's exit does not walk it either (a tiny ``omnimeta run``: 4.6 s -> 4.1 s). It does so
only in a process that froze its imports at start: a user's own process that imports omnimeta keeps its
collector as it was.
"""
from __future__ import annotations

import gc

_started_frozen = False


def freeze_imports() -> None:
    """Move every object alive now to the collector's permanent generation (:func:`gc.freeze`)."""
    global _started_frozen
    gc.freeze()
    _started_frozen = True


def freeze_late_imports() -> None:
    """After an import made on first use: :func:`freeze_imports` again, in an omnimeta process only."""
    if _started_frozen:
        gc.freeze()
