"""Inner-loop engines for the MAML family: how a meta-batch of tasks is adapted and differentiated.

The engines compute the same thing, the meta-gradient of the mean query loss
after ``steps`` SGD steps on each task's support set (first or second order);
they differ in how:

* ``l2l`` (the default and the reference): learn2learn's ``MAML`` wrapper,
  task by task, ``clone()`` / ``adapt()`` / ``grad``, the tasks spread over the
  process's task threads and their gradients added in task order
  (:mod:`l2l_omniglot.threads`).
* ``batched``: all tasks of the meta-batch at once with ``torch.func``
  (``functional_call``, ``grad``, ``vmap``) on the same model.
* ``grouped`` (first order only): groups of tasks as one network with a
  group per task (:mod:`l2l_omniglot.engines.grouped`), the engine every
  MAML-family solver already adapts its test tasks with.

``tests/engines/test_equivalence.py`` checks that their meta-gradients and
adapted query logits agree, and ``bench/speed.py`` times them.

:data:`HEAD_ONLY_ENGINES` are the same two ways to run an inner loop that
adapts only the model's head on features computed once per task (ANIL,
:mod:`l2l_omniglot.engines.head_only`).
"""
from __future__ import annotations

from l2l_omniglot.engines.base import Engine
from l2l_omniglot.engines.batched import BatchedEngine
from l2l_omniglot.engines.grouped import GroupedEngine
from l2l_omniglot.engines.head_only import HeadOnlyBatchedEngine, HeadOnlyLearnToLearnEngine
from l2l_omniglot.engines.learn2learn import LearnToLearnEngine

ENGINES = {
    "l2l": LearnToLearnEngine,
    "batched": BatchedEngine,
    "grouped": GroupedEngine,
}

#: The same engines with an inner loop over the head only (the features are adapted by no task).
HEAD_ONLY_ENGINES = {
    "l2l": HeadOnlyLearnToLearnEngine,
    "batched": HeadOnlyBatchedEngine,
}

__all__ = ["ENGINES", "HEAD_ONLY_ENGINES", "BatchedEngine", "Engine", "GroupedEngine", "HeadOnlyBatchedEngine",
           "HeadOnlyLearnToLearnEngine", "LearnToLearnEngine"]
