"""What several ranks need of a solver (its members, the state they share) is checked before a distributed run."""
import pytest

from l2l_omniglot import make_solver, resolve_config


def test_what_ranks_need_of_a_solver_is_checked_before_a_distributed_run():
    from l2l_omniglot import ConfigError, SOLVERS
    from l2l_omniglot.distributed import check_rank_members, check_splittable

    config = resolve_config("fomaml", meta_batch=4)
    check_splittable(config, 2, SOLVERS["fomaml"])
    check_splittable(config, 1, SOLVERS["transfer"])  # one process needs none of it

    class WithoutSharedState(SOLVERS["fomaml"]):
        shared_state = None

    with pytest.raises(ConfigError, match="cannot split a meta-batch across ranks: it lacks shared_state"):
        check_splittable(config, 2, WithoutSharedState)
    solver = make_solver(config)
    check_rank_members(solver, "fomaml")
    solver.optimizer = None
    with pytest.raises(ConfigError, match="it lacks optimizer"):
        check_rank_members(solver, "fomaml")


def test_the_state_ranks_share_is_the_running_statistics_only():
    solver = make_solver(resolve_config("protonet"))
    shared = solver.shared_state()
    names = {id(buffer): name for name, buffer in solver.model.named_buffers()}  # the solver's live tensors
    assert sorted(names[id(t)].rsplit(".", 1)[1] for t in shared.averaged) == ["running_mean"] * 4 + ["running_var"] * 4
    assert [names[id(t)].rsplit(".", 1)[1] for t in shared.counted] == ["num_batches_tracked"] * 4
    task = make_solver(resolve_config("protonet", options={"batch_norm": "task"})).shared_state()
    assert task.averaged == () and task.counted == ()
    maml = make_solver(resolve_config("fomaml")).shared_state()
    assert maml.averaged == () and maml.counted == ()
