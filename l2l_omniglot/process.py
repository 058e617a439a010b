"""The first step of every omnimeta process: the command line, each worker of ``tune --workers``, each
training process of ``compare``.

:func:`freeze_imports` hides what the imports made from the garbage collector. torch, torchvision and
learn2learn leave over a million objects that live as long as the process; each full collection walks all
of them again, and so does the collection at exit, which alone took 0.9 s of the 3.8 s that
``omnimeta --help`` needed on the development machine (2.8 s frozen). Objects made after the call are
collected as usual.
"""
from __future__ import annotations

import gc


def freeze_imports() -> None:
    """Move every object alive now to the collector's permanent generation (:func:`gc.freeze`)."""
    gc.freeze()
