"""The reference engine: learn2learn's ``MAML`` wrapper, one task at a time.

Per task, ``clone()`` puts a copy of the network in the autograd graph,
``adapt()`` takes the inner steps, and the gradient of the query loss
(divided by the number of tasks) is taken at once, so only one task's graph
is alive per worker. This is the loop of learn2learn's own Omniglot example,
with the tasks spread over the process's task threads
(:mod:`l2l_omniglot.threads`): each task's gradient is computed on one
worker with one torch thread, and the gradients are added in task order, so
the numbers are the same for any thread count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from l2l_omniglot._learn2learn import learn2learn as l2l
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.engines.base import meta_parameter_list
from l2l_omniglot.stats import StepStats, accuracy
from l2l_omniglot.threads import add_in_order, task_threads


class LearnToLearnEngine:
    def __init__(self, model: torch.nn.Module, inner_lr: float, first_order: bool, meta_parameters=None):
        self.maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)
        self.meta_parameters = meta_parameter_list(model, meta_parameters)

    def _adapted(self, support_x, support_y, steps: int, first_order: bool):
        learner = self.maml.clone(first_order=first_order)
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(support_x), support_y))
        return learner

    def accumulate_meta_gradient(self, tasks: TaskBatch, steps: int) -> StepStats:
        parameters = self.meta_parameters

        def task_gradient(t: int):
            learner = self._adapted(tasks.support_x[t], tasks.support_y[t], steps, self.maml.first_order)
            logits = learner(tasks.query_x[t])
            loss = F.cross_entropy(logits, tasks.query_y[t])
            gradients = torch.autograd.grad(loss / len(tasks), parameters, allow_unused=True)
            return gradients, loss.item(), accuracy(logits, tasks.query_y[t])

        results = task_threads().map(task_gradient, range(len(tasks)))
        add_in_order(parameters, [gradients for gradients, _, _ in results])
        return StepStats(sum(r[1] for r in results) / len(tasks), sum(r[2] for r in results) / len(tasks))

    def adapted_query_logits(self, tasks: TaskBatch, steps: int, transductive: bool = True) -> torch.Tensor:
        """The adapted query logits; ``transductive=False`` passes each query with the support set alone.

        Transductive (the MAML convention): the task's queries are one batch, so
        batch norm normalises each with statistics of all of them. Otherwise
        each query is one batch with the task's support set (``support + 1``
        images) and only its own row of logits is kept, so no query's
        prediction depends on another query (Nichol et al. 2018, Reptile,
        section on transduction). The adapted weights are the same either way.
        """
        def task_logits(t: int) -> torch.Tensor:
            # First order: nothing is back-propagated from here, so no graph is kept.
            learner = self._adapted(tasks.support_x[t], tasks.support_y[t], steps, True)
            with torch.no_grad():
                if transductive:
                    return learner(tasks.query_x[t])
                support = tasks.support_x[t]
                return torch.stack([learner(torch.cat([support, query[None]]))[-1] for query in tasks.query_x[t]])

        return torch.stack(task_threads().map(task_logits, range(len(tasks))))
