import torch

from l2l_omniglot.evaluation import Score, per_task_accuracy
from l2l_omniglot.solvers import make_solver
from l2l_omniglot.solvers.fomaml import FOMAMLSolver
from l2l_omniglot.solvers.maml import MAMLSolver
from tests.solvers.conftest import small_config, snapshot, train


def test_fomaml_learns_well_above_chance(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("fomaml", meta_lr=0.003), 0)
    before = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    train(solver, samplers["train"], 20)  # three inner steps a task (the defaults): 0.69 after 20, 0.85 after 60
    after = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    assert after > 0.45 > 0.2  # chance is 0.2 for 5 ways
    assert after > before + 0.1


def test_maml_learns_above_chance(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("maml", meta_lr=0.003), 0)
    train(solver, samplers["train"], 40)
    assert Score.of(per_task_accuracy(solver, val_tasks)).accuracy > 0.35


def meta_gradient(solver_class, tasks):
    torch.manual_seed(1)
    solver = solver_class(small_config(solver_class.name))
    solver.optimizer.zero_grad()
    solver.accumulate_meta_gradient(tasks)
    # The zero head is not meta-learned: the engine computes no gradient for it, so none is all-reduced.
    assert solver.model.head.weight.grad is None and solver.model.head.bias.grad is None
    return torch.cat([p.grad.flatten() for p in solver.model.features.parameters()]), solver


def test_maml_differentiates_through_the_inner_step(samplers):
    tasks = samplers["train"].sample(seed=0, iteration=1, count=4)
    first_order, fo_solver = meta_gradient(FOMAMLSolver, tasks)
    second_order, so_solver = meta_gradient(MAMLSolver, tasks)
    # Same initial weights, same tasks: only the second-order terms differ.
    assert torch.equal(snapshot(fo_solver.model)["head.weight"], snapshot(so_solver.model)["head.weight"])
    relative = (first_order - second_order).norm() / second_order.norm()
    assert relative > 1e-2


def test_prediction_leaves_the_initialisation_unchanged(samplers, test_tasks):
    solver = make_solver(small_config("fomaml"), 0)
    before = snapshot(solver.model)
    solver.predict(test_tasks)
    after = snapshot(solver.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in solver.model.parameters())


def test_a_20_way_task_for_a_5_way_model_is_a_clear_error(omniglot, lake_split):
    import pytest

    from l2l_omniglot.data.tasks import phase_samplers
    from l2l_omniglot.errors import ConfigError

    tasks = phase_samplers(omniglot, lake_split, 20, 1, 1, phases=("test",))["test"].sample(0, 0, 1)
    with pytest.raises(ConfigError, match="5-way head and cannot answer 20-way"):
        make_solver(small_config("maml"), 0).predict(tasks)
