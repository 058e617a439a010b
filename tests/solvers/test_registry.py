import pytest
import torch

from l2l_omniglot.checkpoint import load_solver, save_checkpoint
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS, Solver, make_solver, solver_class
from tests.solvers.conftest import small_config, train


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_meets_the_protocol(name, samplers):
    solver = make_solver(small_config(name), samplers["train"].dataset.num_classes)
    assert isinstance(solver, Solver)
    assert solver.name == name


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_checkpoint_round_trip_gives_identical_predictions(name, samplers, test_tasks, tmp_path):
    classes = samplers["train"].dataset.num_classes
    torch.manual_seed(0)
    solver = make_solver(small_config(name), classes)
    train(solver, samplers["train"], 3)
    save_checkpoint(tmp_path / "checkpoint.pt", solver.config, solver.state_dict(), classes)
    torch.manual_seed(123)  # a different initialisation, fully overwritten by the load
    config, restored, payload = load_solver(tmp_path / "checkpoint.pt")  # rebuilt from the file alone
    assert config == solver.config and payload["num_train_classes"] == classes
    assert payload["solver_package"] == "omnimeta"
    assert torch.equal(solver.predict(test_tasks), restored.predict(test_tasks))


def test_unknown_solver_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown solver 'reptile'; use one of transfer, fomaml, maml"):
        solver_class("reptile")
