"""Test-time adaptation of many tasks at once: each task's copy of the network as one group of a wider network.

The idea. ``T`` tasks, each adapting its own copy of the 4-block net on its
own support set, are one network with ``T`` times the channels: the images of
task ``t`` are its ``t``-th group of input channels (``[T, N, 1, S, S]`` ->
``[N, T, S, S]``), every convolution is a grouped convolution whose ``t``-th
group holds task ``t``'s weights, and batch norm over the ``(N, H, W)`` of each
of the ``T * 64`` channels is exactly each task's own batch statistics. ReLU and
max-pool act per channel. The tasks never mix, so one ordinary ``backward`` of
the sum of the tasks' support losses gives every task its own gradient: the
inner loop of all tasks is one wide network's SGD, with no ``vmap``, no
per-task Python and native kernels throughout (batch norm, max-pool), where the
``vmap`` path spends most of its time in batching rules, layout copies and
decomposed batch norm (``bench/limits.py``; docs/results.md).

It computes what :class:`~l2l_omniglot.engines.learn2learn.LearnToLearnEngine`'s
``adapted_query_logits`` computes (first-order inner steps on the support
set, then the adapted net on the queries, transductive or not), to rounding:
``tests/engines/test_grouped.py`` checks logits and predictions against it.
It also meta-trains first-order MAML (``--engine grouped``): the first-order
meta-gradient of a task is the gradient of its query loss at its adapted
weights, so one more backward of the wide network, summed over the groups'
tasks, is the meta-gradient of the whole meta-batch (checked against the l2l
engine's in ``tests/engines/test_equivalence.py``). Second order needs the
derivatives through the inner steps, which this engine drops: MAML refuses it.
With a zero head the first step moves the head only (the features' gradient is
the head's weight times the residual, zero), so it is taken on features
computed once without a backward through the convolutions, as the batched
engine does.

The network must be :class:`~l2l_omniglot.models.ConvNet`-like: ``features``
a (nested) ``nn.Sequential`` of ``Conv2d``, batch-statistics ``BatchNorm2d``,
``ReLU``, ``MaxPool2d`` and ``Flatten``, and ``head`` an ``nn.Linear``
(:func:`supports`).

Example::

    from l2l_omniglot.engines.grouped import GroupedEngine
    engine = GroupedEngine(model, inner_lr=0.4)
    logits = engine.adapted_query_logits(tasks, steps=20)    # [tasks, queries, ways]; model unchanged
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.engines.base import meta_parameter_list
from l2l_omniglot.engines.head_only import query_batches
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.stats import StepStats, accuracy
from l2l_omniglot.threads import add_in_order, task_threads

#: Tasks adapted together: enough to fill the convolutions, few enough to keep their activations small and to
#: give every task thread a group. Fixed, so that no number depends on the thread count.
TASKS_PER_GROUP = 16

_ELEMENTARY = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten)


def _leaf_layers(features: nn.Module) -> list:
    """``[(name, module)]`` of ``features`` in forward order, or None where the order is not the registration one."""
    layers = []
    for name, module in features.named_modules():
        children = list(module.children())
        if children:
            if not isinstance(module, nn.Sequential):
                return None
            continue
        layers.append((name, module))
    return layers


def supports(model: nn.Module) -> bool:
    """Whether ``model`` is a network this engine can widen (see the module docstring)."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if not isinstance(features, nn.Sequential) or not isinstance(head, nn.Linear):
        return False
    layers = _leaf_layers(features)
    return layers is not None and all(
        isinstance(m, _ELEMENTARY) and not (isinstance(m, nn.BatchNorm2d) and m.track_running_stats)
        and not (isinstance(m, nn.Conv2d) and m.padding_mode != "zeros") for _, m in layers)


class GroupedEngine:
    """First-order adaptation and prediction of many tasks at once as one grouped network (module docstring)."""

    def __init__(self, model: nn.Module, inner_lr: float, first_order: bool = True, meta_parameters=None,
                 tasks_per_group: int = TASKS_PER_GROUP):
        if not first_order:
            raise ConfigError("the grouped engine is first order only (FO-MAML); for second-order MAML use "
                              "--engine l2l or --engine batched")
        if not supports(model):
            raise ValueError("the grouped engine needs a ConvNet-like model (features of conv, batch-statistics "
                             "batch norm, ReLU, max-pool, flatten; a linear head)")
        self.model = model
        self.inner_lr = inner_lr
        self.tasks_per_group = tasks_per_group
        self.meta_parameters = meta_parameter_list(model, meta_parameters)
        names = {id(p): name for name, p in model.named_parameters()}
        #: The meta-parameters' names, in the order of ``meta_parameters``.
        self._meta_names = [names[id(p)] for p in self.meta_parameters]
        self._layers = [(f"features.{name}.", module) for name, module in _leaf_layers(model.features)]

    # -- the wide network ------------------------------------------------------------------------------
    def _features(self, fast: dict, x: torch.Tensor) -> torch.Tensor:
        """``[tasks, n, feature_dim]`` for images ``[tasks, n, C, S, S]``, task ``t`` with weights ``fast[...][t]``."""
        tasks, n = x.shape[:2]
        # Channels-first in float32: batch norm's channels-last kernel loses float32 precision on nearly constant
        # channels (4x the error of the per-task engines), and in this grouped layout it is no faster. Under
        # bfloat16 autocast (--precision bfloat16) that error is far below bfloat16's own, and channels-last is
        # faster (a profiled predict of 8 FO-MAML tasks: 0.87 s -> 0.52 s; docs/results.md); the weights follow
        # the images' layout, or every convolution converts one of them.
        layout = torch.channels_last if torch.is_autocast_enabled(x.device.type) else torch.contiguous_format
        h = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=layout)  # [n, tasks * C, S, S]
        for prefix, layer in self._layers:
            if isinstance(layer, nn.Conv2d):
                weight = fast[prefix + "weight"].flatten(0, 1).contiguous(memory_format=layout)
                bias = fast[prefix + "bias"].flatten() if layer.bias is not None else None
                h = F.conv2d(h, weight, bias, layer.stride, layer.padding, layer.dilation, tasks * layer.groups)
            elif isinstance(layer, nn.BatchNorm2d):
                weight = fast[prefix + "weight"].flatten() if layer.affine else None
                bias = fast[prefix + "bias"].flatten() if layer.affine else None
                h = F.batch_norm(h, None, None, weight, bias, training=True, momentum=0.0, eps=layer.eps)
            elif isinstance(layer, nn.Flatten):
                h = h.reshape(n, tasks, -1)
            else:
                h = layer(h)
        return h.transpose(0, 1)

    @staticmethod
    def _head(fast: dict, features: torch.Tensor) -> torch.Tensor:
        """``[tasks, n, ways]``: task ``t``'s linear head on its features."""
        return torch.baddbmm(fast["head.bias"].unsqueeze(1), features, fast["head.weight"].transpose(1, 2))

    @staticmethod
    def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The sum over tasks of each task's mean cross-entropy: its gradient is every task's own."""
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum") / labels.shape[1]

    # -- adaptation ------------------------------------------------------------------------------------
    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, steps: int) -> dict:
        """Each task's weights after ``steps`` first-order SGD steps on its support set: ``{name: [tasks, ...]}``."""
        tasks = len(support_x)
        fast = {name: p.detach().unsqueeze(0).expand(tasks, *p.shape) for name, p in self.model.named_parameters()}
        head_names = ("head.weight", "head.bias")
        for step in range(steps):
            head_only = step == 0 and not any(bool(fast[name].any()) for name in head_names)
            # From a zero head the features' gradient is zero (Kao et al. 2022): step one moves the head alone.
            moving = head_names if head_only else tuple(fast)
            fast = {name: p.requires_grad_() if name in moving else p for name, p in fast.items()}
            with torch.enable_grad():
                if head_only:
                    with torch.no_grad():
                        features = self._features(fast, support_x)
                else:
                    features = self._features(fast, support_x)
                loss = self._loss(self._head(fast, features), support_y)
                gradients = torch.autograd.grad(loss, [fast[name] for name in moving])
            fast = {**fast, **{name: (fast[name] - self.inner_lr * g).detach()
                               for name, g in zip(moving, gradients)}}
        return {name: p.detach() for name, p in fast.items()}

    # -- meta-training (first order) ---------------------------------------------------------------------
    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        """Add the first-order meta-gradient of the mean query loss over ``tasks`` to the meta-parameters' ``.grad``.

        Each group of tasks adapts as one wide network; the gradient of its query losses at the adapted weights,
        summed over its tasks, is added to ``.grad`` group after group, so the numbers do not depend on the threads.
        """
        names = self._meta_names

        def group_gradient(part: TaskBatch) -> tuple:
            adapted = self.adapt(part.support_x, part.support_y, steps)
            at = {name: p.requires_grad_() if name in names else p for name, p in adapted.items()}
            with torch.enable_grad():
                logits = self._head(at, self._features(at, part.query_x))
                loss = self._loss(logits, part.query_y)
                gradients = torch.autograd.grad(loss / len(tasks), [at[name] for name in names])
            # Every task has as many queries, so the group's accuracy times its tasks is the sum of theirs.
            return [g.sum(dim=0) for g in gradients], loss.item(), accuracy(logits, part.query_y) * len(part)

        results = task_threads().map(group_gradient, list(tasks.chunks(self.tasks_per_group)))
        add_in_order(self.meta_parameters, [gradients for gradients, _, _ in results])
        return StepStats(sum(r[1] for r in results) / len(tasks), sum(r[2] for r in results) / len(tasks))

    @torch.no_grad()
    def _logits(self, fast: dict, x: torch.Tensor) -> torch.Tensor:
        return self._head(fast, self._features(fast, x))

    def adapted_query_logits(self, tasks: TaskBatch, steps: int, transductive: bool = True) -> torch.Tensor:
        """The adapted query logits ``[tasks, ways * queries, ways]``; the model is left unchanged.

        ``transductive=False``: each query is predicted in one batch with its task's support set alone (as
        :meth:`LearnToLearnEngine.adapted_query_logits
        <l2l_omniglot.engines.learn2learn.LearnToLearnEngine.adapted_query_logits>`).
        """
        def group_logits(part: TaskBatch) -> torch.Tensor:
            fast = self.adapt(part.support_x, part.support_y, steps)
            return torch.cat([self._logits(fast, x)[:, rows] for x, rows in query_batches(part, transductive)], dim=1)

        # The groups go to the task threads, one torch thread each (l2l_omniglot.threads): the numbers are the
        # same for any thread count, and a busy neighbour slows a worker down instead of every operation.
        return torch.cat(task_threads().map(group_logits, list(tasks.chunks(self.tasks_per_group))))
