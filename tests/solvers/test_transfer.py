import pytest
import torch

from l2l_omniglot.evaluation import Score, per_task_accuracy
from l2l_omniglot.solvers import make_solver
from l2l_omniglot.solvers.transfer import imprinted_head
from tests.solvers.conftest import small_config, snapshot, train


@pytest.fixture(scope="module")
def untrained_and_pretrained(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("transfer", meta_lr=0.003),
                         samplers["train"].dataset.num_classes)
    untrained = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    train(solver, samplers["train"], 100)
    return untrained, solver


@pytest.fixture(scope="module")
def pretrained(untrained_and_pretrained):
    return untrained_and_pretrained[1]


def test_classes_mode_learns_transferable_features(untrained_and_pretrained, val_tasks):
    untrained, pretrained = untrained_and_pretrained
    pretrained_accuracy = Score.of(per_task_accuracy(pretrained, val_tasks)).accuracy
    assert pretrained_accuracy > 0.55 and pretrained_accuracy > untrained + 0.1, (untrained, pretrained_accuracy)


def test_evaluating_transfer_leaves_its_weights_untouched(pretrained, test_tasks):
    before = snapshot(pretrained.model)
    pretrained.predict(test_tasks)
    after = snapshot(pretrained.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_imprinted_head_classifies_its_own_support_set():
    features = torch.randn(5, 64)
    head = imprinted_head(features, torch.arange(5), ways=5, scale=10.0)
    assert torch.equal(head(features).argmax(dim=1), torch.arange(5))


def test_tasks_mode_trains_on_task_local_labels(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("transfer", mode="tasks", inner_lr=0.4, test_inner_steps=5), 0)
    assert solver.model.head.out_features == 5
    first = solver.meta_train_step(samplers["train"].sample(0, 0, solver.config.meta_batch))
    stats = train(solver, samplers["train"], 20)
    assert stats.loss < first.loss  # it fits the support sets it is trained on
    accuracy = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    assert 0.2 < accuracy < 0.95
