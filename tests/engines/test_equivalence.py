"""The batched and grouped engines compute what the learn2learn engine computes (grouped: first order).

Same fixed meta-batch of real Omniglot tasks, same initial weights: the
meta-gradient (of the parameters the meta-optimizer updates) and the adapted
query logits agree, for FO-MAML and MAML, at 1 and 3 inner steps, with the
zero head (which takes the batched engine's head-only first step) and with a
learned head (which does not).

The exact check runs in float64 (the engines agree to about 1e-13 there). In
float32 the engines round differently (different summation orders), and a few tasks have
nearly degenerate batch-norm statistics that amplify rounding: the learn2learn
engine's own 3-step logits move by about 2e-2 when its weights are perturbed
by 1e-7. So float32 is checked at 1 inner step, where the problem is well
conditioned (measured: about 2e-6).
"""
import pytest
import torch

from l2l_omniglot import make_solver
from tests.solvers.conftest import small_config

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def meta_batch(samplers):
    return samplers["train"].sample(seed=0, iteration=1, count=6)


def as_dtype(tasks, dtype):
    return type(tasks)(tasks.support_x.to(dtype), tasks.support_y, tasks.query_x.to(dtype), tasks.query_y,
                       tasks.classes)


def meta_gradient_and_logits(solver_name, engine, steps, zero_head, tasks, dtype):
    torch.manual_seed(7)
    config = small_config(solver_name, engine=engine, train_inner_steps=steps, zero_head=zero_head)
    solver = make_solver(config, 0)
    solver.model.to(dtype)
    tasks = as_dtype(tasks, dtype)
    solver.optimizer.zero_grad()
    stats = solver.accumulate_meta_gradient(tasks)
    meta_parameters = [p for group in solver.optimizer.adam.param_groups for p in group["params"]]
    gradient = torch.cat([p.grad.flatten() for p in meta_parameters])
    return gradient, solver.engine.adapted_query_logits(tasks, steps), stats


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("solver_name", ["fomaml", "maml"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("zero_head", [True, False], ids=["zero-head", "learned-head"])
def test_batched_meta_gradient_and_logits_equal_learn2learn_in_float64(meta_batch, solver_name, steps, zero_head):
    reference, reference_logits, reference_stats = meta_gradient_and_logits(
        solver_name, "l2l", steps, zero_head, meta_batch, torch.float64)
    batched, batched_logits, batched_stats = meta_gradient_and_logits(
        solver_name, "batched", steps, zero_head, meta_batch, torch.float64)
    assert reference.norm() > 0
    assert relative_error(batched, reference) < TOLERANCE
    assert relative_error(batched_logits, reference_logits) < TOLERANCE
    assert batched_stats.loss == pytest.approx(reference_stats.loss, rel=TOLERANCE)
    assert batched_stats.accuracy == pytest.approx(reference_stats.accuracy)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("zero_head", [True, False], ids=["zero-head", "learned-head"])
def test_grouped_first_order_meta_gradient_equals_learn2learn_in_float64(meta_batch, steps, zero_head):
    reference, reference_logits, reference_stats = meta_gradient_and_logits(
        "fomaml", "l2l", steps, zero_head, meta_batch, torch.float64)
    grouped, grouped_logits, grouped_stats = meta_gradient_and_logits(
        "fomaml", "grouped", steps, zero_head, meta_batch, torch.float64)
    assert reference.norm() > 0
    assert relative_error(grouped, reference) < TOLERANCE
    assert relative_error(grouped_logits, reference_logits) < TOLERANCE
    assert grouped_stats.loss == pytest.approx(reference_stats.loss, rel=TOLERANCE)
    assert grouped_stats.accuracy == pytest.approx(reference_stats.accuracy)


def test_grouped_meta_gradient_equals_learn2learn_in_float32_at_one_step(meta_batch):
    reference, reference_logits, _ = meta_gradient_and_logits("fomaml", "l2l", 1, True, meta_batch, torch.float32)
    grouped, grouped_logits, _ = meta_gradient_and_logits("fomaml", "grouped", 1, True, meta_batch, torch.float32)
    assert relative_error(grouped, reference) < TOLERANCE
    assert relative_error(grouped_logits, reference_logits) < TOLERANCE


def test_second_order_maml_refuses_the_grouped_engine():
    from l2l_omniglot.errors import ConfigError

    with pytest.raises(ConfigError, match="first order only"):
        make_solver(small_config("maml", engine="grouped"), 0)


@pytest.mark.parametrize("solver_name", ["fomaml", "maml"])
def test_batched_meta_gradient_equals_learn2learn_in_float32_at_one_step(meta_batch, solver_name):
    reference, reference_logits, _ = meta_gradient_and_logits(solver_name, "l2l", 1, True, meta_batch, torch.float32)
    batched, batched_logits, _ = meta_gradient_and_logits(solver_name, "batched", 1, True, meta_batch, torch.float32)
    assert relative_error(batched, reference) < TOLERANCE
    assert relative_error(batched_logits, reference_logits) < TOLERANCE


def test_second_order_differs_from_first_order_in_the_batched_engine(meta_batch):
    first, _, _ = meta_gradient_and_logits("fomaml", "batched", 1, True, meta_batch, torch.float64)
    second, _, _ = meta_gradient_and_logits("maml", "batched", 1, True, meta_batch, torch.float64)
    assert relative_error(first, second) > 1e-2
