"""MAML (Finn, Abbeel and Levine, ICML 2017) on learn2learn's ``MAML`` wrapper.

The idea: learn an initialisation from which a few gradient steps on a new
task's support set give a good classifier for its queries. Per task, the
wrapper's ``clone()`` copies the network into the autograd graph, ``adapt()``
takes ``train_inner_steps`` SGD steps at ``inner_lr`` on the support loss, and
the adapted network's query loss is back-propagated to the initialisation.
The query losses are averaged over the meta-batch, and Adam (``meta_lr``)
updates the initialisation.

``MAMLSolver`` differentiates through the inner steps (second order).
:class:`~l2l_omniglot.solvers.fomaml.FOMAMLSolver` sets ``first_order`` and
drops those second derivatives, which is cheaper and nearly as good.

At test time every task adapts its own copy for ``test_inner_steps`` steps;
the meta-learned initialisation is never changed. Whichever engine trains,
the test tasks of a call adapt together as one grouped network
(:mod:`l2l_omniglot.engines.grouped`), which gives the learn2learn engine's
numbers to rounding, several times faster.

Batch norm always uses batch statistics (there are no running ones). So by
default a task's queries are classified together, each normalised with the
statistics of all of them (transductive, the MAML convention).
``transductive=false`` classifies each query in a batch with the support
set alone at validation and test (Nichol, Achiam and Schulman 2018, Reptile,
on transduction), which is what a solver with running statistics (transfer)
is compared against; meta-training is the same either way.

How the tasks are adapted is the ``engine`` (:mod:`l2l_omniglot.engines`):
``l2l``, learn2learn's wrapper one task at a time (the default), or
``batched``, all tasks at once with ``torch.func``; the two agree to 1e-5.

Options (``omnimeta solvers`` lists them): ``inner_lr``, ``train_inner_steps``,
``test_inner_steps``, ``zero_head``, ``engine`` and ``transductive``.

Paper: Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", ICML 2017.

Example::

    from l2l_omniglot import make_solver, resolve_config
    solver = make_solver(resolve_config("maml", engine="batched"))
    stats = solver.meta_train_step(tasks)     # tasks: a TaskBatch
    labels = solver.predict(tasks)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from l2l_omniglot.engines import ENGINES
from l2l_omniglot.engines.grouped import GroupedEngine, supports
from l2l_omniglot.solvers.base import EngineSolver
from l2l_omniglot.solvers.options import SolverOptions, option
from l2l_omniglot.solvers.space import linear_range, log_range, one_of


@dataclass(frozen=True)
class MAMLOptions(SolverOptions):
    inner_lr: float = option(0.4, "Inner-loop learning rate.", flag="--inner-lr", minimum=0.0,
                             tune=log_range(0.05, 1.0))
    # Each training step more multiplies the step's cost (and MAML's memory), so the range stays short.
    train_inner_steps: int = option(1, "Adaptation steps while meta-training.", flag="--train-inner-steps",
                                    minimum=0, maximum=100, tune=linear_range(1, 3))
    test_inner_steps: int = option(20, "Adaptation steps at validation and test.", flag="--test-inner-steps",
                                   minimum=0, maximum=1000, tune=linear_range(5, 40))
    zero_head: bool = option(True, "Start every task from a zero head instead of a meta-learned one "
                                   "(Kao et al., ICLR 2022).", flag="--zero-head/--learned-head")
    engine: str = option("l2l", "How tasks adapt while meta-training: one at a time with learn2learn (l2l), all "
                                "at once with torch.func (batched), or in groups as one wide network (grouped; "
                                "first order only).", flag="--engine", choices=tuple(ENGINES))
    transductive: bool = option(True, "At validation and test, normalise a task's queries together with their own "
                                      "batch statistics (the MAML convention); false: classify each query in one "
                                      "batch with the support set alone (Nichol et al. 2018).")


class MAMLSolver(EngineSolver):
    name: ClassVar[str] = "maml"
    description: ClassVar[str] = ("MAML: meta-learn an initialisation that a few SGD steps adapt to a task "
                                  "(second order, learn2learn's MAML wrapper)")
    paper: ClassVar[str] = "Finn, Abbeel and Levine, Model-Agnostic Meta-Learning, ICML 2017"
    Options: ClassVar[type] = MAMLOptions
    first_order: ClassVar[bool] = False
    defaults: ClassVar[dict] = {"iterations": 3000, "meta_batch": 8, "meta_lr": 0.003, "val_every": 500}
    tuned_settings: ClassVar[dict] = {"meta_lr": log_range(3e-4, 1e-2), "meta_batch": one_of(4, 8, 16)}

    engines: ClassVar[dict] = ENGINES

    def first_order_inner_loop(self) -> bool:
        return self.first_order

    def test_time_engine(self):
        """All test tasks of a call adapted at once as one grouped network, whichever engine trains."""
        return GroupedEngine(self.model, self.options.inner_lr) if supports(self.model) else self.engine

    @classmethod
    def label(cls, options: dict) -> str:
        return cls.name if options.get("transductive", True) else f"{cls.name} (non-transductive)"
