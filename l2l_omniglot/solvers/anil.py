"""ANIL, Almost No Inner Loop (Raghu, Raghu, Bengio and Vinyals, ICLR 2020), on learn2learn's ``MAML`` wrapper.

The idea: Raghu et al. found that MAML's inner loop barely changes the
feature network; what a task's few gradient steps change is the final
linear layer. So ANIL adapts only the head in the inner loop. The features
are computed once per task and meta-learned in the outer loop, like MAML's
initialisation: per task, the head is cloned, takes ``train_inner_steps`` SGD
steps at ``inner_lr`` on the support features, and the adapted head's query
loss is back-propagated to the features (and to the head's starting point,
unless it is the zero head). Adam (``meta_lr``) updates them from the mean query
loss over the meta-batch. At test time each task adapts a clone of the head for
``test_inner_steps`` steps; nothing meta-learned changes.

This is learn2learn's ANIL recipe: ``l2l.algorithms.MAML(model.head, lr=inner_lr,
first_order=first_order)`` wraps the head only, and ``clone()`` / ``adapt()``
run on the features (:mod:`l2l_omniglot.engines.head_only`). Because an inner
step only touches a linear layer on fixed features, it costs almost nothing:
with ``engine="batched"`` the feature network runs once for the whole
meta-batch and every inner step is one ``vmap`` over the tasks of the head's
gradient, so a step of ANIL costs what FO-MAML's fastest step costs, at any
number of inner steps. Second order only differentiates the head's inner
gradient through the support features (never the convolutions twice), so it
costs little more than first order.

Batch norm is MAML's: every forward pass normalises with the statistics of
the images it is given (the task's support set while adapting, its query set
while predicting) and no running statistics are kept, so by default a task's
queries are embedded together (transductive, the MAML convention).
``transductive=false`` embeds each query in one batch with the support set
alone at validation and test, as the MAML solvers' option of that name does;
meta-training is the same either way.

Options (``omnimeta solvers`` lists them; defaults chosen on validation
tasks, ``bench/results/protonet_anil_sweeps.md``):

* ``inner_lr`` (``--inner-lr``, 0.1): the head's inner-loop learning rate
  (0.05-0.2 validated alike; 0.4 with 5 steps lost 0.05).
* ``train_inner_steps`` / ``test_inner_steps`` (``--train-inner-steps`` 5,
  ``--test-inner-steps`` 20): head steps while meta-training (5 beat 1 by
  0.016) and at validation and test (10-50 validated alike).
* ``first_order`` (False): drop the derivatives through the inner steps;
  second order validated 0.010 higher and costs little here.
* ``zero_head`` (``--zero-head/--learned-head``, zero): start every task from
  a zero head (not meta-learned; Kao et al., ICLR 2022) instead of a
  meta-learned one, which validated 0.19 lower after 300 steps.
* ``engine`` (``--engine``, ``batched``): ``batched`` (all tasks at once with
  ``torch.func``) or ``l2l`` (learn2learn's wrapper, one task at a time, the
  reference); they agree to 1e-5.
* ``transductive`` (True): see batch norm above.

Paper: Raghu, Raghu, Bengio and Vinyals, "Rapid Learning or Feature Reuse?
Towards Understanding the Effectiveness of MAML", ICLR 2020.

Example::

    omnimeta run --solver anil
    omnimeta run --solver anil --engine l2l --option first_order=true

or from Python::

    from l2l_omniglot import load_omniglot, make_solver, phase_samplers, make_split, resolve_config
    omniglot = load_omniglot()
    sampler = phase_samplers(omniglot, make_split("lake", omniglot), 5, 1, 1, phases=("train",))["train"]
    solver = make_solver(resolve_config("anil", train_inner_steps=5))
    stats = solver.meta_train_step(sampler.sample(seed=0, iteration=1, count=8))
    labels = solver.predict(sampler.sample(seed=0, iteration=2, count=4))   # [4, 5]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from l2l_omniglot.engines import HEAD_ONLY_ENGINES
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.base import EngineSolver
from l2l_omniglot.solvers.options import SolverOptions, option
from l2l_omniglot.solvers.space import linear_range, log_range, one_of


@dataclass(frozen=True)
class ANILOptions(SolverOptions):
    inner_lr: float = option(0.1, "Inner-loop learning rate of the head.", flag="--inner-lr", minimum=0.0,
                             tune=log_range(0.01, 1.0))
    train_inner_steps: int = option(5, "Head adaptation steps while meta-training.", flag="--train-inner-steps",
                                    minimum=0, maximum=100, tune=linear_range(1, 10))
    test_inner_steps: int = option(20, "Head adaptation steps at validation and test.", flag="--test-inner-steps",
                                   minimum=0, maximum=1000, tune=linear_range(5, 50))
    first_order: bool = option(False, "Drop the derivatives through the inner steps (first-order ANIL).",
                               tune=one_of(False, True))
    zero_head: bool = option(True, "Start every task from a zero head instead of a meta-learned one "
                                   "(Kao et al., ICLR 2022).", flag="--zero-head/--learned-head")
    engine: str = option("batched", "How tasks adapt: all at once with torch.func (batched), or one at a time with "
                                    "learn2learn (l2l).", flag="--engine", choices=tuple(HEAD_ONLY_ENGINES))
    transductive: bool = option(True, "At validation and test, normalise a task's queries together with their own "
                                      "batch statistics (the MAML convention); false: embed each query in one batch "
                                      "with the support set alone (Nichol et al. 2018).")

    def check(self, solver: str) -> None:
        if self.zero_head and self.train_inner_steps == 0:
            raise ConfigError(f"{solver} with a zero head needs train_inner_steps >= 1: without an inner step "
                              f"every query is scored by the zero head and nothing is learned")


class ANILSolver(EngineSolver):
    name: ClassVar[str] = "anil"
    description: ClassVar[str] = ("ANIL: meta-learn the features; each task adapts only the head "
                                  "(learn2learn's MAML wrapper around the head)")
    paper: ClassVar[str] = "Raghu, Raghu, Bengio and Vinyals, Rapid Learning or Feature Reuse?, ICLR 2020"
    Options: ClassVar[type] = ANILOptions
    #: Chosen on validation tasks (bench/results/protonet_anil_sweeps.md) to fit well under 15 minutes on the
    #: 2-core development CPU.
    defaults: ClassVar[dict] = {"iterations": 2000, "meta_batch": 8, "meta_lr": 0.003, "val_every": 250}
    tuned_settings: ClassVar[dict] = {"meta_lr": log_range(3e-4, 1e-2), "meta_batch": one_of(4, 8, 16)}

    engines: ClassVar[dict] = HEAD_ONLY_ENGINES

    def first_order_inner_loop(self) -> bool:
        return self.options.first_order

    def test_time_engine(self):
        """All test tasks of a call adapted at once (the batched head-only engine), whichever engine trains."""
        return HEAD_ONLY_ENGINES["batched"](self.model, self.options.inner_lr, True)

    @classmethod
    def label(cls, options: dict) -> str:
        modes = [mode for mode, on in (("first order", options.get("first_order", ANILOptions.first_order)),
                                       ("non-transductive", not options.get("transductive", True))) if on]
        return f"{cls.name} ({', '.join(modes)})" if modes else cls.name
