"""Data-parallel meta-training in the library (distributed.py): shards, and two ranks' averaged meta-gradient."""
import pytest
import torch

from l2l_omniglot import load_omniglot, make_solver, resolve_config
from l2l_omniglot.distributed import task_shard
from l2l_omniglot.run_tasks import RunTasks
from tests.conftest import on_two_ranks


#: Meta-batch 5: shards of 3 and 2 tasks, so the weighting must be right; few, quick tasks.
GRADIENT_SETTING = dict(solver="fomaml", iterations=5, meta_batch=5, queries=1, val_every=5, val_tasks=6,
                        eval_tasks=12, test_inner_steps=3, device="cpu", seed=1)
#: The bias of a convolution followed by batch norm (models.conv_block) is cancelled by the normalisation: its
#: true gradient is zero, so its updates are Adam's reading of float rounding and differ with summation order.
#: Those four vectors do not change what the network computes (checked below), so equality is judged without them.
CANCELLED_BIASES = [f"features.{block}.0.bias" for block in range(4)]


def test_shards_cover_every_task_once_in_order():
    for total in (1, 5, 32, 33):
        for world_size in (1, 2, 3, 5):
            shards = [task_shard(total, rank, world_size) for rank in range(world_size)]
            assert [i for shard in shards for i in shard] == list(range(total))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1



def meta_step_on_rank(ranks, out: str, data_root: str) -> None:
    """One rank of :func:`test_unequal_shards_average_to_the_single_process_meta_gradient` (a spawned process)."""
    solver, tasks = first_meta_batch(load_omniglot(data_root), ranks.shard(GRADIENT_SETTING["meta_batch"]))
    stats = ranks.meta_train_step(solver, tasks, GRADIENT_SETTING["meta_batch"])
    if ranks.is_main:
        torch.save({"gradient": flat_gradient(solver), "loss": stats.loss, "accuracy": stats.accuracy}, out)


def first_meta_batch(omniglot, shard: range) -> tuple:
    config = resolve_config(**GRADIENT_SETTING)
    torch.manual_seed(0)
    sampler = RunTasks.build(config, omniglot, phases=("train",)).samplers["train"]
    return make_solver(config), sampler.sample(config.seed, 1, len(shard), first=shard.start)


def flat_gradient(solver) -> torch.Tensor:
    # The cancelled biases' true gradient is zero; what is computed there is rounding noise, which differs
    # with the thread count (the ranks run one thread each) and would dominate a relative error.
    return torch.cat([p.grad.flatten() for name, p in solver.model.named_parameters()
                      if name.startswith("features.") and name not in CANCELLED_BIASES])


@pytest.mark.slow  # two spawned processes
def test_unequal_shards_average_to_the_single_process_meta_gradient(omniglot, data_root, tmp_path):
    on_two_ranks(meta_step_on_rank, tmp_path / "got", str(data_root))
    got = torch.load(tmp_path / "got", weights_only=True)
    solver, tasks = first_meta_batch(omniglot, range(GRADIENT_SETTING["meta_batch"]))
    expected = solver.meta_train_step(tasks)
    gradient = flat_gradient(solver)
    assert ((got["gradient"] - gradient).norm() / gradient.norm()).item() < 1e-5
    assert got["loss"] == pytest.approx(expected.loss, rel=1e-6)
    assert got["accuracy"] == pytest.approx(expected.accuracy, rel=1e-6)
