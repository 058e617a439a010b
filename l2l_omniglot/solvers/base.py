"""The one interface every solver meets, and a small base class that meets most of it.

A solver is one step, never a loop: the training loop
(:mod:`l2l_omniglot.training`) hands it batches of tasks, and the evaluation
(:mod:`l2l_omniglot.evaluation`) hands it fixed test tasks. A solver lives in
one file, declares its own options there (:mod:`l2l_omniglot.solvers.options`)
and is found through the entry-point group ``omnimeta.solvers``, whether it
ships with omnimeta or in another package (see ``docs/solvers.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch

from l2l_omniglot.config import RunConfig
from l2l_omniglot.data.tasks import TaskBatch
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.models import ConvNet
from l2l_omniglot.solvers.options import SolverOptions
from l2l_omniglot.stats import StepStats, accuracy

#: What the registry checks on a solver class before it is used (a plugin missing one is reported by name).
REQUIRED_MEMBERS = ("name", "description", "Options", "defaults", "meta_train_step", "predict", "state_dict",
                    "load_state_dict")
#: What the ranks of a distributed run need besides (see :class:`SplittableSolver`); checked before one starts.
RANK_METHODS = ("accumulate_meta_gradient", "meta_parameters", "shared_state")
RANK_ATTRIBUTES = ("model", "optimizer")


@dataclass(frozen=True)
class SharedState:
    """State besides the meta-parameters that the ranks of a distributed run keep equal after every step.

    ``averaged``: tensors that every rank replaces by their mean over the
    ranks (batch-norm running means and variances). ``counted``: counters
    that every rank advances by the sum of all ranks' advances in the step
    (batch norm's ``num_batches_tracked``), so they count as one process
    would. Both hold the solver's live tensors, changed in place.
    """

    averaged: tuple = ()
    counted: tuple = ()


@runtime_checkable
class Solver(Protocol):
    """Meta-train on batches of tasks; adapt to a support set and predict its queries.

    ``__init__(config, num_train_classes, device)`` builds the solver from a
    :class:`~l2l_omniglot.config.RunConfig` whose ``options`` are this
    solver's own; ``num_train_classes`` is the number of classes in the
    meta-train phase (after augmentation), for solvers that learn over all of
    them. The checkpoint stores it, so a saved solver is rebuilt without data.

    A solver that also meets :class:`SplittableSolver` can split a meta-batch
    across the ranks of a distributed run.

    A solver that meta-trains on tasks of another shape than it is tested on
    (Prototypical Networks train with more ways and queries than the test
    tasks have) offers the classmethod ``train_task_shape(config) -> (ways,
    shots, queries)``: the training loop then samples its meta-training tasks
    with that shape, while validation and test keep the run's ``--ways``,
    ``--shots`` and ``--queries``. Without it, training tasks have the run's
    shape. The hook is read before the solver is built, so it may depend on
    ``config`` (and the solver's options in ``config.options``) only.
    """

    name: ClassVar[str]
    #: One line for ``omnimeta solvers``.
    description: ClassVar[str]
    #: The paper the solver implements (authors, venue, year), or "" for none.
    paper: ClassVar[str]
    #: The solver's own options: a :class:`~l2l_omniglot.solvers.options.SolverOptions` dataclass.
    Options: ClassVar[type]
    #: The solver's defaults for shared settings, over :class:`~l2l_omniglot.config.RunConfig`'s.
    defaults: ClassVar[dict]
    #: Optional: the shared settings ``omnimeta tune`` searches for this solver, name -> range
    #: (:mod:`l2l_omniglot.solvers.space`); its own options carry their ranges in ``option(..., tune=...)``.
    tuned_settings: ClassVar[dict]

    def meta_train_step(self, tasks: TaskBatch) -> StepStats:
        """Take one optimisation step on a meta-batch of tasks."""

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        """Adapt to each task's support set and return its query labels, ``[tasks, ways * queries]``.

        Must leave the solver's meta-trained state unchanged.
        """

    def state_dict(self) -> dict:
        """Everything needed to resume: tensors and plain data only."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


@runtime_checkable
class SplittableSolver(Solver, Protocol):
    """A solver whose meta-batch can be split across ranks: what each rank of a distributed run uses.

    Each rank calls ``optimizer.zero_grad()``, then ``accumulate_meta_gradient``
    on its shard of the tasks; the ranks then all-reduce the ``.grad`` of
    ``meta_parameters()`` and what ``shared_state()`` names, and every rank
    calls ``optimizer.step()``, so all keep the same solver. Checked before a
    distributed run starts (:func:`missing_rank_members`).
    """

    #: The network whose parameters are (or contain) the meta-parameters.
    model: torch.nn.Module
    #: Steps the meta-parameters: ``zero_grad()``, ``step()``, ``state_dict()``, ``load_state_dict()``.
    optimizer: object

    def accumulate_meta_gradient(self, tasks: TaskBatch) -> StepStats:
        """Add the meta-gradient of the mean query loss over ``tasks`` to the meta-parameters' ``.grad``."""

    def meta_parameters(self) -> list:
        """The parameters the meta-optimizer steps; ranks all-reduce their gradients."""

    def shared_state(self) -> SharedState:
        """The tensors besides the meta-parameters that ranks must keep equal after each step (often none)."""


def missing_rank_members(solver) -> list:
    """The members of :class:`SplittableSolver` that ``solver`` lacks (of a class: its methods only)."""
    missing = [name for name in RANK_METHODS if not callable(getattr(solver, name, None))]
    if not isinstance(solver, type):
        missing += [name for name in RANK_ATTRIBUTES if getattr(solver, name, None) is None]
    return missing


class BaseSolver:
    """What most solvers share: options built from the config, a label, and model + optimizer state.

    A subclass sets the class attributes of :class:`Solver`, builds
    ``self.model`` and ``self.optimizer`` in ``__init__`` (after calling this
    one) and writes ``meta_train_step`` and ``predict``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Options: ClassVar[type] = SolverOptions
    defaults: ClassVar[dict] = {}
    tuned_settings: ClassVar[dict] = {}

    def __init__(self, config: RunConfig, num_train_classes: int = 0, device="cpu"):
        self.config = config
        self.num_train_classes = num_train_classes
        self.device = torch.device(device)
        self.options = self.Options.build(config.options, self.name)

    @classmethod
    def label(cls, options: dict) -> str:
        """How tables name a run of this solver with ``options`` (e.g. a mode in brackets)."""
        return cls.name

    def meta_parameters(self) -> list:
        """The parameters the meta-optimizer steps: by default all of ``model``'s."""
        return list(self.model.parameters())

    def shared_state(self) -> SharedState:
        """Nothing besides the meta-parameters for ranks to share (a solver with running statistics overrides)."""
        return SharedState()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class GradientSolver(BaseSolver):
    """A solver whose meta-train step is one optimizer step on the gradient ``accumulate_meta_gradient`` adds.

    Such a solver meets :class:`SplittableSolver` (with BaseSolver's
    ``meta_parameters`` and ``shared_state``) and so can split a meta-batch
    across ranks: each rank then calls ``accumulate_meta_gradient`` on its
    share, the ranks all-reduce the gradients (and the shared state), and each
    steps ``optimizer`` itself.
    """

    def meta_train_step(self, tasks: TaskBatch) -> StepStats:
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.accumulate_meta_gradient(tasks)
        self.optimizer.step()
        return stats

    def accumulate_meta_gradient(self, tasks: TaskBatch) -> StepStats:
        """Add the meta-gradient of the mean query loss over ``tasks`` to the meta-parameters' ``.grad``."""
        raise NotImplementedError


class EngineSolver(GradientSolver):
    """The solvers whose inner loop is an engine (:mod:`l2l_omniglot.engines`): the MAML family and ANIL.

    The network is the 4-block ConvNet with batch statistics; with the
    ``zero_head`` option its head starts every task at zero and only the
    features are meta-learned (Kao et al., ICLR 2022: task labels are a random
    permutation, so no learned head start can favour a class). The engine,
    picked by the ``engine`` option from :attr:`engines`, adapts each task and
    adds the meta-gradient; its options are ``inner_lr``,
    ``train_inner_steps``, ``test_inner_steps`` and ``transductive``.
    """

    #: The engines this solver may use, by name (its ``engine`` option picks one).
    engines: ClassVar[dict] = {}

    def __init__(self, config: RunConfig, num_train_classes: int = 0, device="cpu"):
        super().__init__(config, num_train_classes, device)
        options = self.options
        self.model = ConvNet(config.ways, image_size=config.image_size, batch_stats=True).to(self.device)
        meta_parameters = list(self.model.parameters())
        if options.zero_head:
            torch.nn.init.zeros_(self.model.head.weight)
            torch.nn.init.zeros_(self.model.head.bias)
            meta_parameters = list(self.model.features.parameters())
        self._meta_parameters = meta_parameters
        self.optimizer = build_optimizer(meta_parameters, config)
        # The engine differentiates for the meta-parameters only: a zero head adapts in the inner loop, but no
        # meta-gradient is computed, accumulated or all-reduced for it.
        self.engine = self.engines[options.engine](self.model, options.inner_lr, self.first_order_inner_loop(),
                                                   meta_parameters=meta_parameters)
        #: The engine :meth:`predict` adapts test tasks with: the same numbers as ``engine`` (to rounding), many
        #: tasks at once where the solver has such an engine (:meth:`test_time_engine`).
        self.test_engine = self.test_time_engine()

    def test_time_engine(self):
        """The engine that adapts test tasks (first order, no meta-gradient): by default the training engine."""
        return self.engine

    def meta_parameters(self) -> list:
        """The whole network's parameters, or the features' only with a zero head."""
        return list(self._meta_parameters)

    def first_order_inner_loop(self) -> bool:
        """Whether the meta-gradient drops the derivatives through the inner steps."""
        raise NotImplementedError

    def accumulate_meta_gradient(self, tasks: TaskBatch) -> StepStats:
        return self.engine.accumulate_meta_gradient(tasks.to(self.device), self.options.train_inner_steps)

    def predict(self, tasks: TaskBatch) -> torch.Tensor:
        check_ways(self.config.ways, tasks.ways)
        logits = self.test_engine.adapted_query_logits(tasks.to(self.device), self.options.test_inner_steps,
                                                       transductive=self.options.transductive)
        return logits.argmax(dim=-1).cpu()


class MetaOptimizer:
    """Adam at ``config.meta_lr``; with ``lr_schedule="cosine"`` annealed to zero over ``config.iterations``.

    A solver may instead halve the learning rate every ``halve_every`` steps
    (Snell et al. 2017 halve it every 2,000 episodes); that needs
    ``lr_schedule="constant"``, so that two schedules never mix.

    The schedule steps with the optimizer, so the solver's own state (and a
    resumed run) carries it; the training loop needs to know nothing of it.

    Adam and its schedule are made on first use, and a loaded state waits
    for them: making a torch optimizer imports torch._dynamo (1.1-1.3 s on
    the development machine), which a process that only evaluates or
    predicts never needs.
    """

    def __init__(self, parameters, config: RunConfig, halve_every: int = 0):
        if halve_every and config.lr_schedule != "constant":
            raise ConfigError(f"halving the meta learning rate every {halve_every} steps needs "
                              f"--lr-schedule constant (got {config.lr_schedule}); set it, or drop the halving")
        self._parameters = list(parameters)
        self._config, self._halve_every = config, halve_every
        self._adam = self.schedule = self._loaded = None

    @property
    def adam(self) -> torch.optim.Adam:
        if self._adam is None:
            self._adam = torch.optim.Adam(self._parameters, lr=self._config.meta_lr)
            if self._halve_every:
                self.schedule = torch.optim.lr_scheduler.StepLR(self._adam, step_size=self._halve_every, gamma=0.5)
            elif self._config.lr_schedule == "cosine":
                self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self._adam, T_max=self._config.iterations)
            if self._loaded is not None:
                state, self._loaded = self._loaded, None
                self.load_state_dict(state)
        return self._adam

    @property
    def param_groups(self) -> list:
        """Adam's parameter groups, as on a torch optimizer (their ``lr`` is the rate of the next step)."""
        return self.adam.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.adam.step()  # first, so that the schedule exists
        if self.schedule is not None:
            self.schedule.step()

    def state_dict(self) -> dict:
        if self._loaded is not None:
            return self._loaded  # loaded, never used since: the same state
        adam = self.adam.state_dict()  # first, so that the schedule exists
        return {"adam": adam, "schedule": self.schedule.state_dict() if self.schedule is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self._adam is None:
            self._loaded = state
            return
        self._adam.load_state_dict(state["adam"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])


def build_optimizer(parameters, config: RunConfig, halve_every: int = 0) -> MetaOptimizer:
    """The meta-optimizer every solver uses (see :class:`MetaOptimizer`)."""
    return MetaOptimizer(parameters, config, halve_every)


def check_ways(head_ways: int, task_ways: int) -> None:
    """A model with an N-way head can only answer N-way tasks."""
    if head_ways != task_ways:
        raise ConfigError(f"this model has a {head_ways}-way head and cannot answer {task_ways}-way tasks; "
                          f"evaluate it with {head_ways} ways or train a {task_ways}-way model")


__all__ = ["BaseSolver", "EngineSolver", "GradientSolver", "MetaOptimizer", "RANK_ATTRIBUTES", "RANK_METHODS",
           "REQUIRED_MEMBERS", "SharedState", "Solver", "SolverOptions", "SplittableSolver", "StepStats", "accuracy",
           "build_optimizer", "check_ways", "missing_rank_members"]
