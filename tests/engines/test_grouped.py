"""The grouped engine (test-time adaptation of many tasks at once) computes what the learn2learn engine computes.

Real Omniglot tasks, the same weights: the adapted query logits agree in
float64 (to about 1e-14) for a zero and a learned head, transductive or not,
over several groups of tasks; in float32 at one step to the equivalence tests'
1e-5; and the solvers' ``predict``, which adapts with it, gives the
predictions the learn2learn engine gives task by task.
"""
import pytest
import torch

from l2l_omniglot import ConvNet, make_solver
from l2l_omniglot.engines.grouped import GroupedEngine, supports
from tests.engines.test_equivalence import TOLERANCE, as_dtype, relative_error
from tests.solvers.conftest import small_config, snapshot


@pytest.fixture(scope="module")
def tasks(samplers):
    return samplers["test"].sample(seed=0, iteration=1, count=5)


def solver_for(zero_head, dtype, solver="fomaml", **overrides):
    torch.manual_seed(7)
    solver = make_solver(small_config(solver, engine="l2l", zero_head=zero_head, **overrides), 0)
    if not zero_head:
        torch.nn.init.normal_(solver.model.head.weight, std=0.1)  # a head that is not zero in any sense
    solver.model.to(dtype)
    return solver


@pytest.mark.parametrize("zero_head", [True, False], ids=["zero-head", "learned-head"])
@pytest.mark.parametrize("transductive", [True, False], ids=["transductive", "non-transductive"])
def test_grouped_logits_equal_learn2learn_in_float64(tasks, zero_head, transductive):
    solver = solver_for(zero_head, torch.float64)
    tasks = as_dtype(tasks, torch.float64)
    # Two tasks per group: the five tasks take three groups, the last one smaller.
    grouped = GroupedEngine(solver.model, solver.options.inner_lr, tasks_per_group=2)
    for steps in (1, 3):
        reference = solver.engine.adapted_query_logits(tasks, steps, transductive=transductive)
        logits = grouped.adapted_query_logits(tasks, steps, transductive=transductive)
        assert logits.shape == reference.shape == (5, 10, 5)
        assert relative_error(logits, reference) < TOLERANCE
        assert torch.equal(logits.argmax(-1), reference.argmax(-1))


def test_grouped_logits_equal_learn2learn_in_float32_at_one_step(tasks):
    solver = solver_for(True, torch.float32)
    reference = solver.engine.adapted_query_logits(tasks, 1)
    logits = GroupedEngine(solver.model, solver.options.inner_lr).adapted_query_logits(tasks, 1)
    assert relative_error(logits, reference) < TOLERANCE


@pytest.mark.parametrize("solver_name", ["fomaml", "maml", "anil"])
def test_predict_adapts_all_tasks_at_once_with_the_per_task_predictions(tasks, solver_name):
    solver = solver_for(True, torch.float64, solver=solver_name, test_inner_steps=4)
    assert solver.test_engine is not solver.engine  # predict does not go task by task through the l2l engine
    tasks = as_dtype(tasks, torch.float64)
    before = snapshot(solver.model)
    predicted = solver.predict(tasks)
    per_task = torch.cat([solver.engine.adapted_query_logits(tasks[t:t + 1], 4) for t in range(len(tasks))])
    assert torch.equal(predicted, per_task.argmax(-1))
    assert all(torch.equal(before[k], v) for k, v in snapshot(solver.model).items())
    assert all(p.grad is None for p in solver.model.parameters())


def test_grouped_logits_are_the_same_on_one_task_thread_and_on_two(tasks):
    from l2l_omniglot import threads

    solver = solver_for(True, torch.float32)
    grouped = GroupedEngine(solver.model, solver.options.inner_lr, tasks_per_group=2)
    before = threads.task_threads().threads
    try:
        threads.configure_threads(1)
        one = grouped.adapted_query_logits(tasks, 3)
        threads.configure_threads(2)
        two = grouped.adapted_query_logits(tasks, 3)
    finally:
        threads.configure_threads(before)
    assert torch.equal(one, two)


def test_grouped_engine_refuses_a_network_with_running_statistics():
    assert supports(ConvNet(5))
    assert not supports(ConvNet(5, batch_stats=False))
    with pytest.raises(ValueError, match="ConvNet-like"):
        GroupedEngine(ConvNet(5, batch_stats=False), 0.4)
