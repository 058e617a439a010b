import pytest
import torch

from l2l_omniglot import RunConfig
from l2l_omniglot.data.tasks import TEST_STREAM, VALIDATION_STREAM, fixed_tasks, phase_samplers


@pytest.fixture(scope="module")
def samplers(omniglot, lake_split):
    return phase_samplers(omniglot, lake_split, 5, 1, 2)


@pytest.fixture(scope="module")
def val_tasks(samplers):
    return fixed_tasks(samplers["val"], 60, VALIDATION_STREAM)


@pytest.fixture(scope="module")
def test_tasks(samplers):
    return fixed_tasks(samplers["test"], 8, TEST_STREAM)


def small_config(solver: str, **overrides) -> RunConfig:
    from l2l_omniglot import SOLVERS, resolve_config

    # Few test-time steps keep the suite fast (for the solvers that adapt at test time at all); the solvers'
    # own defaults are measured in docs/results.md.
    values = dict(queries=2, meta_batch=8, val_tasks=20, eval_tasks=20, device="cpu")
    if "test_inner_steps" in {spec.name for spec in SOLVERS[solver].Options.specs()}:
        values["test_inner_steps"] = 5
    values.update(overrides)
    return resolve_config(solver, **values)


def train(solver, sampler, iterations: int, seed: int = 0):
    for iteration in range(1, iterations + 1):
        stats = solver.meta_train_step(sampler.sample(seed, iteration, solver.config.meta_batch))
    return stats


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
