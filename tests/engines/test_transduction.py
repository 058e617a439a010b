"""Non-transductive evaluation (``transductive=false``): each query is classified in one batch with its task's
support set alone, with the same adapted weights as the transductive default.

Checked in float64 against the learn2learn wrapper's adapted learner itself, and the batched engine against the
learn2learn engine, with the zero head (the batched engine's head-only first step) and a learned head. Two
tasks with one query per class keep it fast: the engines' per-task weights are slow in float64.
"""
import pytest
import torch

from l2l_omniglot import make_solver
from l2l_omniglot.solvers import solver_label
from tests.engines.test_equivalence import TOLERANCE, as_dtype, relative_error
from tests.solvers.conftest import small_config


@pytest.fixture(scope="module")
def tasks(samplers):
    two = as_dtype(samplers["val"].sample(seed=0, iteration=1, count=2), torch.float64)
    # one query per class: 5 queries per task
    return type(two)(two.support_x, two.support_y, two.query_x[:, ::2], two.query_y[:, ::2], two.classes)


def solver_for(engine, zero_head, steps, transductive=True, solver="fomaml"):
    torch.manual_seed(7)
    solver = make_solver(small_config(solver, engine=engine, zero_head=zero_head, test_inner_steps=steps,
                                      transductive=transductive), 0)
    solver.model.to(torch.float64)
    return solver


def learner_logits(solver, tasks, steps):
    """From the learn2learn wrapper's own adapted learner: the queries in one batch, and each with the support set."""
    together, alone = [], []
    for t in range(len(tasks)):
        learner = solver.engine._adapted(tasks.support_x[t], tasks.support_y[t], steps, True)
        with torch.no_grad():
            together.append(learner(tasks.query_x[t]))
            alone.append(torch.stack([learner(torch.cat([tasks.support_x[t], q[None]]))[-1]
                                      for q in tasks.query_x[t]]))
    return torch.stack(together), torch.stack(alone)


@pytest.mark.parametrize("zero_head", [True, False], ids=["zero-head", "learned-head"])
def test_non_transductive_logits_come_from_the_same_adapted_weights_with_other_statistics(tasks, zero_head):
    solver = solver_for("l2l", zero_head, 3)
    together, alone = learner_logits(solver, tasks, 3)
    transductive = solver.engine.adapted_query_logits(tasks, 3)
    non_transductive = solver.engine.adapted_query_logits(tasks, 3, transductive=False)
    assert non_transductive.shape == transductive.shape == (2, 5, 5)
    assert relative_error(transductive, together) < TOLERANCE
    assert relative_error(non_transductive, alone) < TOLERANCE
    assert relative_error(non_transductive, transductive) > 1e-3  # same weights, other batch statistics


@pytest.mark.parametrize("zero_head,steps", [(True, 1), (True, 3), (False, 1)],
                         ids=["zero-head-1", "zero-head-3", "learned-head-1"])
def test_batched_non_transductive_logits_equal_learn2learn_in_float64(tasks, zero_head, steps):
    reference = solver_for("l2l", zero_head, steps).engine.adapted_query_logits(tasks, steps, transductive=False)
    batched = solver_for("batched", zero_head, steps).engine.adapted_query_logits(tasks, steps, transductive=False)
    transductive = solver_for("batched", zero_head, steps).engine.adapted_query_logits(tasks, steps)
    assert relative_error(batched, reference) < TOLERANCE
    assert relative_error(batched, transductive) > 1e-3


@pytest.mark.parametrize("engine", ["l2l", "batched"])
def test_a_non_transductive_prediction_does_not_depend_on_the_other_queries(tasks, engine):
    solver = solver_for(engine, True, 1)
    changed = type(tasks)(tasks.support_x, tasks.support_y, tasks.query_x.clone(), tasks.query_y, tasks.classes)
    changed.query_x[:, 1:] = changed.query_x[:, 1:].flip(-1)  # every query but the first is another image
    for transductive in (True, False):
        before = solver.engine.adapted_query_logits(tasks, 1, transductive=transductive)[:, 0]
        after = solver.engine.adapted_query_logits(changed, 1, transductive=transductive)[:, 0]
        assert torch.allclose(before, after, rtol=1e-9, atol=1e-12) is (not transductive)


def test_the_option_reaches_predict_and_names_the_run(tasks):
    config = small_config("maml", transductive=False)
    assert config.options["transductive"] is False and solver_label(config) == "maml (non-transductive)"
    assert small_config("fomaml").options["transductive"] is True and solver_label(small_config("maml")) == "maml"
    solver = solver_for("l2l", False, 2, transductive=False, solver="maml")
    expected = solver.engine.adapted_query_logits(tasks, 2, transductive=False).argmax(-1)
    assert torch.equal(solver.predict(tasks), expected)
