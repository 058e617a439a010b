"""Prototypical Networks (Snell, Swersky and Zemel, NeurIPS 2017).

The idea: learn an embedding in which each class is well represented by one
point, its prototype, the mean embedding of its support images. A query is
classified by a softmax over the negative squared Euclidean distances from
its embedding to the prototypes, so a new task needs no adaptation at all:
one forward pass of its support and query images. The embedding is
meta-learned episodically: each training episode is a small task, and Adam
(``meta_lr``) minimises the cross-entropy of its queries.

The embedding is the 4-block network of the other solvers without a head
(:class:`~l2l_omniglot.models.ConvNet`'s ``features``: 64 numbers for a 28x28
image). As in the paper, training episodes may have more classes and queries
than the test tasks ("higher way" training helps); the solver asks the
training loop for them through its ``train_task_shape`` hook, while
validation and test keep the run's ``--ways``, ``--shots`` and ``--queries``.
Each meta-training step averages the query loss over ``meta_batch`` episodes.

Batch norm (``batch_norm``):

* ``running`` (the default, as Snell's code): ordinary batch norm. While
  meta-training each episode (support and query images together) is
  normalised with its own statistics, which also update running statistics;
  at validation and test the network is in ``eval()`` mode and uses the
  running statistics, so each query is classified on its own, not
  transductively, and every image is embedded independently of the others.
* ``task``: every episode, at training and at test, is normalised with the
  statistics of its own support and query images together and no running
  statistics are kept (transductive, like the MAML solvers' batch norm).

``running`` won on validation (+0.004 over 1000 tasks, just significant), and
it needs no query set to classify a query. In a distributed run the ranks
average their running statistics after every step (the solver names them in
``shared_state()``), so all ranks score alike.

Options (``omnimeta solvers`` lists them): ``train_ways`` (20),
``train_shots`` (by default the run's ``--shots``), ``train_queries`` (5),
``batch_norm`` (``running``) and ``lr_halve_every`` (0: the run's
``--lr-schedule`` alone; N: halve the meta learning rate every N steps, the
paper's schedule with N = 2000 and one episode per step, which needs
``--lr-schedule constant``). The paper trains 60-way; on this project's
2-core CPU a 60-way step costs about five times a 20-way one, and at equal
CPU time 20 ways validated as well as 30 (``bench/results/protonet_anil_sweeps.md``).
The defaults (4000 steps of one episode at meta-lr 0.003) take about 12
minutes there. 4000 rather than 1500 steps was chosen on validation tasks:
on the Vinyals split the best validation accuracy rose from 0.974 to 0.986,
on the Lake split it stayed level (0.978 and 0.976; docs/results.md).

Paper: Snell, Swersky and Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017.

Example::

    omnimeta run --solver protonet
    omnimeta run --solver protonet --option train_ways=60 --option batch_norm=task
    omnimeta run --solver protonet --ways 20 --augment rotate --out RUN   # for Lake's 20-way runs:
    omnimeta evaluate RUN --benchmark lake20                              # docs/results.md

or from Python::

    import torch
    from l2l_omniglot.solvers.protonet import prototypes, squared_distance_logits
    support, labels = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 0, 1])
    centres = prototypes(support, labels, ways=2)                       # [[1, 0], [0, 4]]
    squared_distance_logits(torch.tensor([[1.0, 1.0]]), centres)        # [[-1, -10]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.omniglot import IMAGES_PER_CHARACTER
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.models import ConvNet
from l2l_omniglot.solvers.base import GradientSolver, SharedState, StepStats, accuracy, build_optimizer
from l2l_omniglot.solvers.options import SolverOptions, option
from l2l_omniglot.solvers.space import linear_range, log_range, one_of

BATCH_NORM_MODES = ("running", "task")


@dataclass(frozen=True)
class ProtoNetOptions(SolverOptions):
    # Up to Snell's 60 ways; each way more costs step time, which the study's equal budget of iterations ignores.
    train_ways: int = option(20, "Classes per meta-training episode (validation and test keep --ways).",
                             minimum=2, maximum=1000, tune=linear_range(5, 60))
    train_shots: Optional[int] = option(None, "Support images per class in a meta-training episode "
                                              "[default: the run's --shots].",
                                        minimum=1, maximum=IMAGES_PER_CHARACTER - 1)
    train_queries: int = option(5, "Query images per class in a meta-training episode.",
                                minimum=1, maximum=IMAGES_PER_CHARACTER - 1, tune=linear_range(1, 15))
    batch_norm: str = option("running", "Batch norm: running statistics at test, as Snell's code (running), or "
                                        "each task normalised with its own statistics (task).",
                             choices=BATCH_NORM_MODES, tune=one_of(*BATCH_NORM_MODES))
    lr_halve_every: int = option(0, "Halve the meta learning rate every N meta-training steps (0: never; Snell et al. "
                                    "2017 halve it every 2,000 episodes); needs --lr-schedule constant.",
                                 minimum=0, maximum=10**9)

    def check(self, solver: str) -> None:
        if self.train_shots is not None and self.train_shots + self.train_queries > IMAGES_PER_CHARACTER:
            raise ConfigError(f"{solver}: train_shots + train_queries must be at most {IMAGES_PER_CHARACTER}, "
                              f"the drawings per character (got {self.train_shots} + {self.train_queries})")


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """The mean embedding of each class, ``[ways, dim]``, from support ``embeddings [n, dim]`` and ``labels [n]``."""
    one_hot = F.one_hot(labels, ways).to(embeddings.dtype)
    counts = one_hot.sum(dim=0)
    if not bool((counts > 0).all()):
        raise ValueError("every class needs at least one support image to have a prototype")
    return (one_hot.T @ embeddings) / counts[:, None]


def squared_distance_logits(queries: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``-||query - prototype||^2``, ``[n, ways]``: the logits of the softmax over the prototypes."""
    return -(queries[:, None, :] - centres[None, :, :]).pow(2).sum(dim=-1)


class ProtoNetSolver(GradientSolver):
    name: ClassVar[str] = "protonet"
    description: ClassVar[str] = ("Prototypical Networks: classify queries by the nearest class-mean embedding "
                                  "(squared Euclidean), trained on higher-way episodes (hand-written)")
    paper: ClassVar[str] = "Snell, Swersky and Zemel, Prototypical Networks for Few-shot Learning, NeurIPS 2017"
    Options: ClassVar[type] = ProtoNetOptions
    #: Chosen on validation tasks (bench/results/protonet_anil_sweeps.md, docs/results.md): one 20-way episode
    #: per step at meta-lr 0.003, 4000 steps (about 12 minutes on one thread of the 2-core development CPU).
    defaults: ClassVar[dict] = {"iterations": 4000, "meta_batch": 1, "meta_lr": 0.003, "val_every": 250}
    tuned_settings: ClassVar[dict] = {"meta_lr": log_range(1e-4, 1e-2)}

    def __init__(self, config: RunConfig, num_train_classes: int = 0, device="cpu"):
        super().__init__(config, num_train_classes, device)
        self.running_stats = self.options.batch_norm == "running"
        network = ConvNet(config.ways, image_size=config.image_size, batch_stats=not self.running_stats)
        #: The embedding: the 4 conv blocks, flattened; no head.
        self.model = network.features.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), config, self.options.lr_halve_every)

    @classmethod
    def train_task_shape(cls, config: RunConfig) -> tuple:
        """``(train_ways, train_shots or --shots, train_queries)``: the shape of the meta-training episodes."""
        options = cls.Options.build(config.options, cls.name)
        shots = options.train_shots if options.train_shots is not None else config.shots
        if shots + options.train_queries > IMAGES_PER_CHARACTER:
            raise ConfigError(f"{cls.name} trains with {shots} shots and train_queries {options.train_queries}, "
                              f"more than the {IMAGES_PER_CHARACTER} drawings per character; lower train_queries")
        return options.train_ways, shots, options.train_queries

    @classmethod
    def label(cls, options: dict) -> str:
        return f"{cls.name} ({options.get('train_ways', ProtoNetOptions.train_ways)}-way training)"

    def episode_logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                       ways: int) -> torch.Tensor:
        """The query logits ``[queries, ways]`` of one episode; support and query go through the network together."""
        embeddings = self.model(torch.cat([support_x, query_x]))
        support, query = embeddings[:len(support_x)], embeddings[len(support_x):]
        return squared_distance_logits(query, prototypes(support, support_y, ways))

    def accumulate_meta_gradient(self, tasks: TaskBatch) -> StepStats:
        """Add the gradient of the mean query loss over the episodes ``tasks`` to the embedding's ``.grad``."""
        tasks = tasks.to(self.device)
        self.model.train()
        total_loss = total_accuracy = 0.0
        for t in range(len(tasks)):
            logits = self.episode_logits(tasks.support_x[t], tasks.support_y[t], tasks.query_x[t], tasks.ways)
            loss = F.cross_entropy(logits, tasks.query_y[t])
            (loss / len(tasks)).backward()
            total_loss += loss.item()
            total_accuracy += accuracy(logits, tasks.query_y[t])
        return StepStats(total_loss / len(tasks), total_accuracy / len(tasks))

    def shared_state(self) -> SharedState:
        """With running statistics, ranks keep their mean (and count every rank's normalised batches).

        So that all ranks score alike; the mean differs from one process's
        statistics in the order of the moving-average updates only.
        """
        if not self.running_stats:
            return SharedState()
        buffers = dict(self.model.named_buffers())
        return SharedState(
            averaged=tuple(b for name, b in buffers.items() if name.endswith(("running_mean", "running_var"))),
            counted=tuple(b for name, b in buffers.items() if name.endswith("num_batches_tracked")))

    @torch.no_grad()
    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        tasks = tasks.to(self.device)
        was_training = self.model.training
        try:
            if self.running_stats:
                # Eval mode: the running statistics are used, not updated, and every image is embedded on its
                # own, so all the tasks' images go through the network as one batch.
                self.model.eval()
                support = self.model(tasks.support_x.flatten(0, 1)).view(len(tasks), tasks.support_x.shape[1], -1)
                query = self.model(tasks.query_x.flatten(0, 1)).view(len(tasks), tasks.query_x.shape[1], -1)
                logits = [squared_distance_logits(query[t], prototypes(support[t], tasks.support_y[t], tasks.ways))
                          for t in range(len(tasks))]
            else:
                # Each task normalised with the statistics of its own images (no running statistics to change).
                self.model.train()
                logits = [self.episode_logits(tasks.support_x[t], tasks.support_y[t], tasks.query_x[t], tasks.ways)
                          for t in range(len(tasks))]
        finally:
            self.model.train(was_training)
        return torch.stack(logits).argmax(dim=-1).cpu()
