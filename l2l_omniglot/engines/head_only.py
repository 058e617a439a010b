"""Head-only inner loops (ANIL): the features are meta-learned, only the linear head adapts to a task.

The engines of :mod:`l2l_omniglot.engines` adapt the whole network. These two
adapt ``model.head`` alone, on features that ``model.features`` computes once
per task (support set and query set each with their own batch statistics, as
in the MAML engines), and offer the same :class:`~l2l_omniglot.engines.base.Engine`
interface:

* ``l2l`` (the reference): learn2learn's ``MAML`` wrapper around the head
  only, as learn2learn's ANIL example does, one task at a time:
  ``MAML(model.head, lr=inner_lr, first_order=...)``, ``clone()`` and
  ``adapt()`` on the task's support features.
* ``batched``: all tasks at once with ``torch.func``. The feature network runs
  once for the whole meta-batch with shared weights (the batched engine's
  flat channels-last pass with per-task batch norm), and every inner step is
  one ``vmap`` over the tasks of ``grad`` of the head's support loss: a few
  small matrix products, nearly free beside the features.

Both give the meta-gradient of the mean query loss with respect to every
parameter (features and head), first or second order, and agree to 1e-5
(``tests/solvers/test_anil.py``, float64). First order drops the derivatives
through the inner gradients, so the support features then get no
meta-gradient: only the query features and the head's starting point do.
Second order only differentiates the head's inner gradient (a linear layer and a
softmax) through the support features, never the convolutions twice, so it
costs little more than first order.

Example::

    from l2l_omniglot.engines import HEAD_ONLY_ENGINES
    engine = HEAD_ONLY_ENGINES["batched"](model, inner_lr=0.4, first_order=False)
    stats = engine.accumulate_meta_gradient(tasks, steps=5)    # adds to model's .grad
    logits = engine.adapted_query_logits(tasks, steps=20)       # model unchanged
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from l2l_omniglot._learn2learn import learn2learn as l2l
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.engines.base import meta_parameter_list
from l2l_omniglot.engines.batched import IMAGES_PER_CHUNK, PerTaskBatchNorm2d, with_batch_norm
from l2l_omniglot.stats import StepStats, accuracy


def query_batches(tasks: TaskBatch, transductive: bool) -> list:
    """The image batches the query features come from, ``[(images [tasks, n, ...], rows of the output kept)]``.

    Transductive (the MAML convention): one batch per task, its queries, so batch norm normalises each query with
    statistics of all of them. Otherwise one batch per query position ``j``: each task's support set and its
    ``j``-th query, of which only the query's row is kept, so no query's prediction depends on another query.
    """
    if transductive:
        return [(tasks.query_x, slice(None))]
    return [(torch.cat([tasks.support_x, tasks.query_x[:, j:j + 1]], dim=1), slice(-1, None))
            for j in range(tasks.query_x.shape[1])]


class HeadOnlyLearnToLearnEngine:
    """learn2learn's ``MAML`` around ``model.head``; ``model.features`` runs once per task's support and query sets."""

    def __init__(self, model: nn.Module, inner_lr: float, first_order: bool, meta_parameters=None):
        self.model = model
        self.meta_parameters = meta_parameter_list(model, meta_parameters)
        self.head = l2l.algorithms.MAML(model.head, lr=inner_lr, first_order=first_order)

    def _adapted_head(self, support_features, support_y, steps: int, first_order: bool):
        learner = self.head.clone(first_order=first_order)
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(support_features), support_y))
        return learner

    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        first_order = self.head.first_order
        total_loss = total_accuracy = 0.0
        for t in range(len(tasks)):
            # First order: the inner gradients are constants, so nothing reaches the support features; their
            # graph is not recorded.
            with torch.set_grad_enabled(not first_order):
                support_features = self.model.features(tasks.support_x[t])
            learner = self._adapted_head(support_features, tasks.support_y[t], steps, first_order)
            logits = learner(self.model.features(tasks.query_x[t]))
            loss = F.cross_entropy(logits, tasks.query_y[t])
            (loss / len(tasks)).backward(inputs=self.meta_parameters)
            total_loss += loss.item()
            total_accuracy += accuracy(logits, tasks.query_y[t])
        return StepStats(total_loss / len(tasks), total_accuracy / len(tasks))

    def adapted_query_logits(self, tasks: TaskBatch, steps: int, transductive: bool = True) -> torch.Tensor:
        """The adapted query logits ``[tasks, ways * queries, ways]``; the model is left unchanged.

        ``transductive=False``: each query's features come from a batch of the support set and that query alone
        (see :func:`query_batches`).
        """
        logits = []
        batches = query_batches(tasks, transductive)
        for t in range(len(tasks)):
            with torch.no_grad():
                support_features = self.model.features(tasks.support_x[t])
                query_features = torch.cat([self.model.features(x[t])[rows] for x, rows in batches])
            learner = self._adapted_head(support_features, tasks.support_y[t], steps, True)
            with torch.no_grad():
                logits.append(learner(query_features))
        return torch.stack(logits)


class HeadOnlyBatchedEngine:
    """Every task at once: the features in one shared-weights pass, then ``vmap``-ed head-only inner steps."""

    def __init__(self, model: nn.Module, inner_lr: float, first_order: bool, meta_parameters=None):
        self.model = model
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.meta_parameters = meta_parameter_list(model, meta_parameters)
        # The batched engine's twin: the same parameters, batch norm over a flat batch of tasks, each with its own
        # statistics, so the feature network runs once for the whole meta-batch.
        self._shared_weights_model = with_batch_norm(model, PerTaskBatchNorm2d)
        self._shared_norms = [m for m in self._shared_weights_model.modules() if isinstance(m, PerTaskBatchNorm2d)]

    def _features(self, features: dict, x: torch.Tensor) -> torch.Tensor:
        """``[tasks, n, feature_dim]`` for images ``[tasks, n, 1, S, S]``: the same weights for every task."""
        per_task = x.shape[1]
        parts = []
        for part in x.split(max(1, IMAGES_PER_CHUNK // per_task)):  # chunks stay in cache (engines/batched.py)
            for norm in self._shared_norms:
                norm.tasks = len(part)
            flat = part.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            parts.append(functional_call(self._shared_weights_model.features, features, (flat,)))
        return torch.cat(parts).view(len(x), per_task, -1)

    def _head_loss(self, head: dict, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.model.head, head, (features,)), labels)

    def _query_logits(self, tasks: TaskBatch, steps: int, first_order: bool, transductive: bool) -> torch.Tensor:
        """``[tasks, ways * queries, ways]``, differentiable to the model's parameters."""
        params = dict(self.model.named_parameters())
        features = {n.removeprefix("features."): p for n, p in params.items() if n.startswith("features.")}
        head = {n.removeprefix("head."): p for n, p in params.items() if n.startswith("head.")}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not first_order):
            support_features = self._features(features, tasks.support_x)
        query_features = torch.cat([self._features(features, x)[:, rows] for x, rows in
                                    query_batches(tasks, transductive)], dim=1)
        fast, head_dim = head, None  # the starting head is shared by all tasks; after a step each has its own
        for _ in range(steps):
            # First order: the inner gradient is a constant of the meta-gradient (learn2learn's first_order).
            at = {name: p.detach() for name, p in fast.items()} if first_order else fast
            gradients = vmap(grad(self._head_loss), in_dims=(head_dim, 0, 0))(at, support_features, tasks.support_y)
            fast = {name: fast[name] - self.inner_lr * gradients[name] for name in fast}
            head_dim = 0
        predict = vmap(lambda h, f: functional_call(self.model.head, h, (f,)), in_dims=(head_dim, 0))
        return predict(fast, query_features)

    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        logits = self._query_logits(tasks, steps, self.first_order, transductive=True)
        loss = F.cross_entropy(logits.flatten(0, 1), tasks.query_y.flatten())
        loss.backward(inputs=self.meta_parameters)
        return StepStats(loss.item(), accuracy(logits, tasks.query_y))

    def adapted_query_logits(self, tasks: TaskBatch, steps: int, transductive: bool = True) -> torch.Tensor:
        """As :meth:`HeadOnlyLearnToLearnEngine.adapted_query_logits`, for all tasks at once."""
        with torch.no_grad():  # torch.func.grad still differentiates inside; nothing outside is recorded
            return self._query_logits(tasks, steps, first_order=True, transductive=transductive)
