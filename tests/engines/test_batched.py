"""The batched engine's parts, and the engine as a solver option."""
import pytest
import torch
from torch import nn

from l2l_omniglot import ConfigError, make_solver, resolve_config
from l2l_omniglot.engines.batched import PerTaskBatchNorm2d
from l2l_omniglot.evaluation import Score, per_task_accuracy
from tests.solvers.conftest import small_config, snapshot, train


def per_task_reference(norm, x, tasks):
    return torch.cat([norm(part) for part in x.chunk(tasks)])


def test_per_task_batch_norm_matches_batch_norm_on_each_task_with_its_gradients():
    torch.manual_seed(0)
    native = nn.BatchNorm2d(3, track_running_stats=False).double()
    with torch.no_grad():
        native.weight.uniform_(0.5, 1.5)
        native.bias.uniform_(-1, 1)
    per_task = PerTaskBatchNorm2d(native)
    per_task.tasks = 4
    x = (torch.randn(4 * 5, 3, 6, 6, dtype=torch.float64) * 3 + 2).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    upstream = torch.randn(4 * 5, 3, 6, 6, dtype=torch.float64)

    expected = per_task_reference(native, x, 4)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (x, native.weight, native.bias))
    actual = per_task(x)
    actual_grads = torch.autograd.grad((actual * upstream).sum(), (x, native.weight, native.bias))
    assert torch.allclose(actual, expected, atol=1e-10)
    for a, e in zip(actual_grads, expected_grads):
        assert torch.allclose(a, e, atol=1e-10)
    # Each task is normalised on its own: moving one task's images leaves the others' outputs unchanged.
    shifted = x.detach().clone()
    shifted[:5] += 10
    assert torch.allclose(per_task(shifted)[5:], actual[5:].detach(), atol=1e-10)


def test_fomaml_learns_with_the_batched_engine(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("fomaml", meta_lr=0.003, engine="batched"), 0)
    before = snapshot(solver.model)
    train(solver, samplers["train"], 40)
    assert Score.of(per_task_accuracy(solver, val_tasks)).accuracy > 0.45  # chance is 0.2
    after = snapshot(solver.model)
    assert torch.equal(before["head.weight"], after["head.weight"])  # a zero head stays zero


def test_batched_prediction_leaves_the_model_unchanged(test_tasks):
    solver = make_solver(small_config("maml", engine="batched"), 0)
    before = snapshot(solver.model)
    solver.predict(test_tasks)
    assert all(torch.equal(before[k], v) for k, v in snapshot(solver.model).items())
    assert all(p.grad is None for p in solver.model.parameters())


@pytest.mark.parametrize("overrides,message", [
    ({"solver": "transfer", "engine": "batched"}, "transfer has no option engine"),
    ({"solver": "maml", "engine": "vectorised"}, "option engine \\(--engine\\) of maml must be one of l2l, batched"),
])
def test_engine_options_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(**overrides)
