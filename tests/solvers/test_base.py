"""solvers/base.py: the meta-optimizer every solver shares."""
import copy
import sys

import torch

from l2l_omniglot import resolve_config
from l2l_omniglot.solvers.base import build_optimizer


def stepped(optimizer, weight: torch.Tensor, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        (weight ** 2).sum().backward()
        optimizer.step()


def test_a_loaded_state_waits_for_the_first_step_and_then_continues_as_an_eager_load_would():
    config = resolve_config("fomaml", iterations=10, meta_lr=0.1)
    start = torch.arange(4.0)
    trained = start.clone().requires_grad_()
    first = build_optimizer([trained], config)
    stepped(first, trained, 3)
    saved = first.state_dict()

    lazy_weight, eager_weight = trained.detach().clone().requires_grad_(), trained.detach().clone().requires_grad_()
    lazy, eager = build_optimizer([lazy_weight], config), build_optimizer([eager_weight], config)
    eager.param_groups  # made now, then loaded: what every optimizer did before
    eager.load_state_dict(copy.deepcopy(saved))  # each its own: Adam keeps the loaded tensors and updates them
    saved = copy.deepcopy(saved)
    lazy.load_state_dict(saved)
    assert lazy.state_dict() is saved  # loaded and unused: handed back as it came, Adam still unmade
    assert lazy.schedule is None and eager.schedule is not None
    stepped(lazy, lazy_weight, 2)
    stepped(eager, eager_weight, 2)
    assert torch.equal(lazy_weight, eager_weight)
    assert lazy.param_groups[0]["lr"] == eager.param_groups[0]["lr"] < 0.1  # the cosine schedule went on too
    assert "torch._dynamo" in sys.modules  # (made by the steps: torch's optimizers import it)
