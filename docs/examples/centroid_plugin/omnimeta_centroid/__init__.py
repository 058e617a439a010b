"""A nearest-centroid solver: pre-train one classifier on all meta-train classes, then classify
each query by the most similar support-class centroid of the features (cosine similarity).

It is the baseline of Snell et al.'s prototypes without episodic training, and the example of
an omnimeta solver that lives in another package: ``pip install`` this folder and
``omnimeta run --solver centroid`` trains it.

Options: ``normalize`` (compare unit-length features, i.e. cosine similarity; else Euclidean).
``omnimeta tune --solver centroid`` searches ``normalize``, ``meta_lr`` and ``meta_batch``.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from l2l_omniglot.models import ConvNet
from l2l_omniglot.solvers import BaseSolver, SolverOptions, StepStats, build_optimizer, log_range, one_of, option
from l2l_omniglot.stats import accuracy


@dataclass(frozen=True)
class CentroidOptions(SolverOptions):
    normalize: bool = option(True, "Compare unit-length features (cosine); false: negative squared distance.",
                             tune=one_of(True, False))


class CentroidSolver(BaseSolver):
    name = "centroid"
    description = "Nearest centroid on the features of a classifier pre-trained on all classes (example plugin)"
    paper = ""
    Options = CentroidOptions
    defaults = {"iterations": 500, "meta_batch": 8}
    # What `omnimeta tune --solver centroid` searches besides normalize (the shared settings it wants tuned).
    tuned_settings = {"meta_lr": log_range(1e-4, 1e-2), "meta_batch": one_of(4, 8, 16)}

    def __init__(self, config, num_train_classes, device="cpu"):
        super().__init__(config, num_train_classes, device)
        self.model = ConvNet(num_train_classes, image_size=config.image_size, batch_stats=False).to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), config)

    def meta_train_step(self, tasks):
        tasks = tasks.to(self.device)
        self.model.train()
        images, labels = tasks.labelled_images()
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return StepStats(loss.item(), accuracy(logits, labels))

    @torch.no_grad()
    def predict(self, tasks):
        tasks = tasks.to(self.device)
        self.model.eval()
        predictions = []
        for t in range(len(tasks)):
            support = self.model.features(tasks.support_x[t])
            query = self.model.features(tasks.query_x[t])
            centroids = torch.stack([support[tasks.support_y[t] == c].mean(0) for c in range(tasks.ways)])
            if self.options.normalize:
                scores = F.normalize(query, dim=-1) @ F.normalize(centroids, dim=-1).T
            else:
                scores = -torch.cdist(query, centroids) ** 2
            predictions.append(scores.argmax(dim=-1))
        return torch.stack(predictions).cpu()
