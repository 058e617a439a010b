"""An engine differentiates the query loss for its meta-parameters only.

The zero-head solvers adapt the head in the inner loop but do not
meta-learn it: given the features' parameters, every engine leaves the
head's ``.grad`` empty (nothing computed, nothing to all-reduce) and gives
the features the same meta-gradient as an engine that differentiates for
everything.
"""
import pytest
import torch

from l2l_omniglot import make_solver
from l2l_omniglot.engines import ENGINES, HEAD_ONLY_ENGINES
from tests.solvers.conftest import small_config

ALL_ENGINES = {**{f"maml-{name}": engine for name, engine in ENGINES.items()},
               **{f"head-only-{name}": engine for name, engine in HEAD_ONLY_ENGINES.items()}}


def zero_head_model():
    torch.manual_seed(3)
    model = make_solver(small_config("fomaml"), 0).model  # zero head by default
    assert not (model.head.weight.any() or model.head.bias.any())
    return model


def meta_gradients(engine_class, model, tasks, first_order, meta_parameters=None) -> dict:
    model.zero_grad(set_to_none=True)
    engine = engine_class(model, 0.4, first_order, meta_parameters=meta_parameters)
    engine.accumulate_meta_gradient(tasks, 2)
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


#: Every engine in both orders, but the grouped one, which is first order only (it refuses second order).
CASES = [(engine, first_order) for engine in sorted(ALL_ENGINES) for first_order in (True, False)
         if first_order or engine != "maml-grouped"]


@pytest.mark.parametrize("engine, first_order", CASES,
                         ids=[f"{e}-{'first' if f else 'second'}-order" for e, f in CASES])
def test_only_the_meta_parameters_get_a_gradient(samplers, engine, first_order):
    tasks = samplers["train"].sample(seed=0, iteration=1, count=3)
    model = zero_head_model()
    every = meta_gradients(ALL_ENGINES[engine], model, tasks, first_order)
    features_only = meta_gradients(ALL_ENGINES[engine], model, tasks, first_order,
                                   meta_parameters=list(model.features.parameters()))
    assert features_only["head.weight"] is None and features_only["head.bias"] is None
    for name, gradient in features_only.items():
        if name.startswith("features."):
            assert gradient is not None and gradient.abs().sum() > 0, name
            torch.testing.assert_close(gradient, every[name], rtol=1e-5, atol=1e-7)


def test_meta_parameters_must_belong_to_the_model():
    model = zero_head_model()
    with pytest.raises(ValueError, match="parameters of the engine's model"):
        ENGINES["l2l"](model, 0.4, True, meta_parameters=[torch.nn.Parameter(torch.zeros(1))])
