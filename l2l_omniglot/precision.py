"""The arithmetic a run computes in: float32, or bfloat16 on float32 weights (``--precision``).

* ``float32`` (the default): every operation in float32, the numbers the
  equivalence tests pin to 1e-5.
* ``bfloat16``: every step and every prediction runs under
  ``torch.autocast(device, torch.bfloat16)``, so convolutions and matrix
  products compute in bfloat16 (float32's range, 8 bits of mantissa) while
  batch-norm statistics, losses, the weights, their gradients and the
  optimiser stay float32 (a float32 master copy). The solver's network is
  also put in channels-last layout: the bfloat16 convolutions of this CPU's
  library are fast in that layout only (``bench/limits.py``, docs/results.md).

The precision is a run's setting, like its split: the training loop,
validation, the final test, ``evaluate``, ``predict``, ``compare`` and
``reproduce`` enter :func:`computing_in` with the precision the run was
trained in, and :func:`~l2l_omniglot.solvers.registry.make_solver` lays the
solver's ``model`` out for it, so a solver from a plugin gets both without a
line of its own. Autocast is a per-thread state; the l2l engine's task
threads take the caller's (:class:`~l2l_omniglot.threads.TaskThreads`).

Example::

    import torch
    from l2l_omniglot.models import ConvNet
    from l2l_omniglot.precision import computing_in, lay_out
    model = lay_out(ConvNet(ways=5), "bfloat16")
    with computing_in("bfloat16", "cpu"):
        logits = model(torch.zeros(10, 1, 28, 28))   # bfloat16 logits, float32 weights
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Optional

import torch

from l2l_omniglot.errors import ConfigError

PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: Optional[str]) -> None:
    """Refuse a precision that is neither None (the run's own) nor one of :data:`PRECISIONS`."""
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def computing_in(precision: str, device) -> ContextManager:
    """The context that steps and predictions of a ``precision`` run execute in, on ``device``."""
    check_precision(precision)
    if precision == "bfloat16":
        # Without the cast cache: it keeps the first bfloat16 copy of each weight until the context is left,
        # and a whole run's steps (which change the weights) happen inside one context.
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (oneDNN's own check: AVX-512 or Arm BF16)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def slow_precision_warning(precision: str, device) -> Optional[str]:
    """A sentence when ``precision`` will be slower than float32 on ``device`` (a CPU without bfloat16 support in
    oneDNN: no AVX-512; bfloat16 convolutions ran ten times slower than float32 on such a VM), else None."""
    if precision != "bfloat16" or torch.device(device).type != "cpu" or native_bfloat16():
        return None
    return ("--precision bfloat16 on a CPU without AVX-512 (no native bfloat16 in oneDNN): its steps will be "
            "slower than float32's; use --precision float32 on this machine")


def lay_out(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` in the memory layout that ``precision`` computes fastest in (in place; returned for chaining).

    Parameters keep their identity (``Module.to`` replaces their data), so an
    optimiser or engine that already holds them stays valid.
    """
    if precision == "bfloat16":
        model.to(memory_format=torch.channels_last)
    return model

