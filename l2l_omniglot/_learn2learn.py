"""learn2learn, imported quietly and when first used.

``import learn2learn`` as PyPI ships it imports gym, which prints a
deprecation notice to stderr on every start. That notice says nothing to an
omnimeta user, so it is swallowed here, once; every module gets learn2learn
from this one.

It also imports torchvision (and with it torch._dynamo) and scipy.stats: 2.6 s
of a bare ``import learn2learn`` on the development machine, 0.8 s of a
command that trains (torch's optimizers import torch._dynamo anyway). The wheel that
``make install`` builds (``tools/build-learn2learn``) imports gym, text and
vision only when they are looked up, which omnimeta never does; and commands
that build no task and adapt nothing (``--help``, ``solvers``, ``benchmarks``,
a refused option) need no learn2learn at all, so :data:`learn2learn` is a
stand-in that imports the package at its first attribute lookup
(``l2l.data.TaskDataset``, ...).
"""
import contextlib
import importlib
import io
import warnings

from l2l_omniglot.process import freeze_late_imports


class _OnFirstUse:
    """The learn2learn module, imported on the first attribute looked up."""

    _module = None

    def __getattr__(self, name):
        if _OnFirstUse._module is None:
            with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _OnFirstUse._module = importlib.import_module("learn2learn")
            freeze_late_imports()
        return getattr(_OnFirstUse._module, name)


learn2learn = _OnFirstUse()

__all__ = ["learn2learn"]
