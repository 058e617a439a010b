"""The batched engine: every task of a meta-batch adapted at once with ``torch.func``.

The per-task loop of learn2learn runs each task's small convolutions one after
another (5 images at a time in 5-way 1-shot). Here the inner loop is written
as a function of the parameters (``functional_call`` on the same model),
its gradient taken with ``grad`` and mapped over the tasks with ``vmap``, so
each layer runs once for the whole meta-batch: with shared weights as one
large convolution, with per-task weights as one grouped convolution. The
meta-gradient then comes from one ordinary ``backward()``.

Semantics are those of the learn2learn engine, to 1e-5 (the tests check the
meta-gradient and the adapted query logits):

* Batch norm uses each task's own batch statistics (support set while
  adapting, query set while predicting): ``vmap`` normalises per task. With
  ``transductive=False`` each query is predicted in a batch with its task's
  support set alone (:meth:`BatchedEngine.adapted_query_logits`).
* ``first_order`` detaches the inner gradients; otherwise the meta-gradient
  differentiates through them (second order).

Two details make it fast and right:

* **Zero head.** From a zero head (``--zero-head``, the MAML solvers'
  default) the first inner step moves only the head: the support loss's
  gradient with respect to the features is the head's weight times the
  residual, which is zero (Kao et al., "MAML is a noisy contrastive learner",
  ICLR 2022). So step one is computed exactly as a head-only step on shared
  features: the feature network runs once, with the same weights for every
  task, as a plain batched network, and with one inner step the query images
  use those shared weights too.
* **Second order through batch norm.** ``vmap``'s batching rule for the
  double backward of the fused batch-norm kernel gives wrong second
  derivatives (pytorch/functorch#534). When the inner gradient must be
  differentiated, the engine maps a twin of the model whose batch norm is
  written out in elementary operations (same parameters, same formula).

Example::

    from l2l_omniglot.engines import BatchedEngine
    engine = BatchedEngine(model, inner_lr=0.4, first_order=False)
    stats = engine.accumulate_meta_gradient(tasks, steps=1)   # adds to model's .grad
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.engines.base import meta_parameter_list
from l2l_omniglot.stats import StepStats, accuracy


#: Images per flat batch in the shared-weights pass (see BatchedEngine._shared_features).
IMAGES_PER_CHUNK = 40


class BatchStatNorm2d(nn.Module):
    """Batch norm with batch statistics, in elementary operations (differentiable to any order under ``vmap``)."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        variance = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        scale = (self.weight * torch.rsqrt(variance.flatten() + self.eps))[:, None, None]
        return (x - mean) * scale + self.bias[:, None, None]


def _by_task(x: torch.Tensor, tasks: int) -> torch.Tensor:
    """``[tasks * n, c, h, w]`` as ``[tasks, n * h * w, c]`` (a view when ``x`` is channels-last)."""
    return x.permute(0, 2, 3, 1).reshape(tasks, -1, x.shape[1])


def _from_task(v: torch.Tensor, like: torch.Size) -> torch.Tensor:
    n, c, h, w = like
    return v.view(n, h, w, c).permute(0, 3, 1, 2)


class _PerTaskBatchNormFunction(torch.autograd.Function):
    """Batch norm of ``tasks`` equal groups of images, each with its own statistics, in channels-last.

    One pass for the statistics and one for the output, and a closed-form
    backward: the decomposed formula's autograd graph costs three times as much.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, tasks: int, eps: float):
        centred = _by_task(x, tasks)
        # Two plain passes (mean, then the centred square's mean): torch.var_mean's Welford reduction is
        # several times slower in this layout, and E[x^2] - E[x]^2 loses float32 precision.
        centred = centred - centred.mean(dim=1, keepdim=True)
        invstd = torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + eps)
        ctx.save_for_backward(centred, invstd, weight)
        ctx.shape = x.shape
        return _from_task(torch.addcmul(bias, centred, invstd * weight), x.shape)

    @staticmethod
    def backward(ctx, grad_out):
        centred, invstd, weight = ctx.saved_tensors
        g = _by_task(grad_out, centred.shape[0])
        count = centred.shape[1]
        grad_bias_per_task = g.sum(dim=1, keepdim=True)
        grad_weight_per_task = (g * centred).sum(dim=1, keepdim=True) * invstd
        # d/dx of BN, (g - mean(g) - normalised * mean(g * normalised)) * invstd * weight, as two fused passes.
        scale = invstd * weight
        grad_x = torch.addcmul(-grad_bias_per_task / count * scale, g, scale)
        grad_x.addcmul_(centred, -grad_weight_per_task / count * invstd * scale)
        return (_from_task(grad_x, ctx.shape), grad_weight_per_task.sum(dim=(0, 1)), grad_bias_per_task.sum(dim=(0, 1)),
                None, None)


class PerTaskBatchNorm2d(BatchStatNorm2d):
    """Batch norm over a flat batch of ``tasks`` equal groups, each normalised with its own statistics."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__(norm)
        self.tasks = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PerTaskBatchNormFunction.apply(x, self.weight, self.bias, self.tasks, self.eps)


def _joined(parts: list) -> torch.Tensor:
    """Per-batch outputs ``[tasks, n_i, ...]`` side by side (the one part itself when there is one)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def with_batch_norm(model: nn.Module, replacement: type) -> nn.Module:
    """A copy of ``model`` whose batch-statistics batch norms are ``replacement(norm)`` (same parameter names)."""
    twin = copy.deepcopy(model)
    for module in list(twin.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                if child.track_running_stats:
                    raise ValueError("the batched engine needs batch norm without running statistics")
                setattr(module, name, replacement(child))
    return twin


class BatchedEngine:
    def __init__(self, model: nn.Module, inner_lr: float, first_order: bool, meta_parameters=None):
        self.model = model
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.meta_parameters = meta_parameter_list(model, meta_parameters)
        self._second_order_model = with_batch_norm(model, BatchStatNorm2d)
        self._shared_weights_model = with_batch_norm(model, PerTaskBatchNorm2d)
        self._shared_norms = [m for m in self._shared_weights_model.modules() if isinstance(m, PerTaskBatchNorm2d)]

    # -- the model as functions of its parameters ------------------------------------------------------
    def _support_loss(self, module):
        def loss(params, x, y):
            return F.cross_entropy(functional_call(module, params, (x,)), y)
        return loss

    def _shared_features(self, features: dict, x: torch.Tensor) -> torch.Tensor:
        """``[tasks, n, feature_dim]`` for images ``[tasks, n, 1, S, S]``, with the same weights for every task.

        One flat channels-last batch through the network, each task normalised with its own statistics: the
        result of ``vmap`` over the tasks, without its layout copies and slow channels-first max-pool.
        """
        per_task = x.shape[1]
        parts = []
        # Chunks of about IMAGES_PER_CHUNK images keep a layer's activations in cache (8 MiB for the first
        # layer), which is faster than one batch of the whole meta-batch (bench/speed.py runs in docs/results.md).
        for part in x.split(max(1, IMAGES_PER_CHUNK // per_task)):
            for norm in self._shared_norms:
                norm.tasks = len(part)
            flat = part.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            parts.append(functional_call(self._shared_weights_model.features, features, (flat,)))
        return torch.cat(parts).view(len(x), per_task, -1)

    def _head_loss(self, head_params, features, y):
        return F.cross_entropy(functional_call(self.model.head, head_params, (features,)), y)

    def _head_is_zero(self) -> bool:
        head = self.model.head
        return not (head.weight.any() or head.bias.any())

    # -- the inner loop --------------------------------------------------------------------------------
    def _step(self, fast: dict, in_dims: dict, gradients: dict) -> tuple:
        fast = {name: fast[name] - self.inner_lr * gradients[name] if name in gradients else fast[name]
                for name in fast}
        in_dims = {name: 0 if name in gradients else in_dims[name] for name in fast}
        return fast, in_dims

    @staticmethod
    def _query_batches(tasks: TaskBatch, transductive: bool) -> list:
        """The batches the queries are predicted in, and the rows of each batch's output that are query logits.

        Transductive: one batch per task, its queries (``[tasks, Q, ...]``, every row). Otherwise one batch per
        query position ``j``: each task's support set and its ``j``-th query (``[tasks, S + 1, ...]``, last row).
        """
        if transductive:
            return [(tasks.query_x, slice(None))]
        return [(torch.cat([tasks.support_x, tasks.query_x[:, j:j + 1]], dim=1), slice(-1, None))
                for j in range(tasks.query_x.shape[1])]

    def _query_logits(self, tasks: TaskBatch, steps: int, first_order: bool,
                      transductive: bool = True) -> torch.Tensor:
        """``[tasks, ways * queries, ways]``, differentiable to the model's parameters."""
        batches = self._query_batches(tasks, transductive)
        params = dict(self.model.named_parameters())
        fast, in_dims = params, {name: None for name in params}
        done = 0
        if steps >= 1 and self._head_is_zero():
            features = {n.removeprefix("features."): p for n, p in params.items() if n.startswith("features.")}
            # A zero head is not meta-learned, so its gradient is left empty (detached) rather than
            # computed in part: the head-only first step omits how the feature step would depend on it.
            head = {n.removeprefix("head."): p.detach() for n, p in params.items() if n.startswith("head.")}
            with torch.set_grad_enabled(torch.is_grad_enabled() and not first_order):
                support_features = self._shared_features(features, tasks.support_x)
            head_gradients = vmap(grad(self._head_loss), in_dims=(None, 0, 0))(head, support_features,
                                                                              tasks.support_y)
            if first_order:
                head_gradients = {name: g.detach() for name, g in head_gradients.items()}
            fast = {**params, **{"head." + name: p for name, p in head.items()}}
            fast, in_dims = self._step(fast, in_dims, {"head." + name: g for name, g in head_gradients.items()})
            done = 1
            if steps == 1:
                query_features = _joined([self._shared_features(features, x)[:, rows] for x, rows in batches])
                fast_head = {name: fast["head." + name] for name in head}
                return vmap(lambda h, f: functional_call(self.model.head, h, (f,)))(fast_head, query_features)
        # Native batch norm has no vmap-ed backward for bfloat16 activations on float32 weights (autocast):
        # there, as for second order, the elementary one.
        native = first_order and not torch.is_autocast_enabled(tasks.support_x.device.type)
        module = self.model if native else self._second_order_model
        inner_gradient = grad(self._support_loss(module))
        for _ in range(done, steps):
            # First order: the inner gradient is a constant of the meta-gradient, so no graph is recorded for it.
            at = {name: p.detach() for name, p in fast.items()} if first_order else fast
            gradients = vmap(inner_gradient, in_dims=(in_dims, 0, 0))(at, tasks.support_x, tasks.support_y)
            fast, in_dims = self._step(fast, in_dims, gradients)
        adapted = vmap(lambda p, x: functional_call(self.model, p, (x,)), in_dims=(in_dims, 0))
        return _joined([adapted(fast, x)[:, rows] for x, rows in batches])

    # -- the Engine interface --------------------------------------------------------------------------
    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        logits = self._query_logits(tasks, steps, self.first_order)
        labels = tasks.query_y
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward(inputs=self.meta_parameters)
        return StepStats(loss.item(), accuracy(logits, labels))

    def adapted_query_logits(self, tasks: TaskBatch, steps: int, transductive: bool = True) -> torch.Tensor:
        """The adapted query logits; ``transductive=False`` passes each query with the support set alone.

        The same as :meth:`LearnToLearnEngine.adapted_query_logits
        <l2l_omniglot.engines.learn2learn.LearnToLearnEngine.adapted_query_logits>`: with
        ``transductive=False`` batch norm normalises each query with the
        statistics of its task's support set and itself, never of other queries.
        """
        with torch.no_grad():  # torch.func.grad still differentiates inside; nothing outside is recorded
            return self._query_logits(tasks, steps, first_order=True, transductive=transductive)
