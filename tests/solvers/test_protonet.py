
import pytest
import torch

from l2l_omniglot.errors import ConfigError
from l2l_omniglot.evaluation import Score, per_task_accuracy
from l2l_omniglot.solvers import make_solver, resolve_config
from l2l_omniglot.solvers.protonet import ProtoNetSolver, prototypes, squared_distance_logits
from tests.conftest import on_two_ranks
from tests.solvers.conftest import small_config, snapshot, train


def test_prototypes_are_class_means_and_logits_negative_squared_distances():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [1.0, 1.0], [3.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    centres = prototypes(support, labels, ways=3)
    assert torch.equal(centres, torch.tensor([[1.0, 0.0], [0.0, 4.0], [2.0, 2.0]]))
    queries = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    # By hand: (1,1) is 1, 10 and 2 away (squared); (0,3) is 10, 1 and 5 away.
    expected = -torch.tensor([[1.0, 10.0, 2.0], [10.0, 1.0, 5.0]])
    assert torch.equal(squared_distance_logits(queries, centres), expected)


def test_a_class_without_support_images_has_no_prototype():
    with pytest.raises(ValueError, match="every class"):
        prototypes(torch.zeros(2, 3), torch.tensor([0, 0]), ways=2)


def test_solver_classifies_by_the_nearest_prototype_of_its_embedding():
    solver = make_solver(small_config("protonet"), 0)
    solver.model = torch.nn.Flatten()  # the identity embedding of 1x1x2 "images"
    support_x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]).view(3, 1, 1, 2)
    support_y = torch.tensor([0, 0, 1])
    query_x = torch.tensor([[1.0, 1.0], [0.0, 3.0]]).view(2, 1, 1, 2)
    logits = solver.episode_logits(support_x, support_y, query_x, ways=2)
    assert torch.equal(logits, -torch.tensor([[1.0, 10.0], [10.0, 1.0]]))


@pytest.mark.parametrize("batch_norm", ["running", "task"])
def test_prediction_leaves_the_embedding_and_its_statistics_unchanged(samplers, test_tasks, batch_norm):
    torch.manual_seed(0)
    solver = make_solver(small_config("protonet", batch_norm=batch_norm), 0)
    train(solver, samplers["train"], 2)  # running statistics that differ from their initial values
    before = snapshot(solver.model)
    assert solver.model.training
    solver.predict(test_tasks)
    after = snapshot(solver.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert solver.model.training  # the mode it was in
    assert any("running_mean" in k for k in before) == (batch_norm == "running")


def test_a_few_training_episodes_learn_well_above_chance(samplers, val_tasks):
    torch.manual_seed(0)
    solver = make_solver(small_config("protonet", meta_batch=2), 0)
    before = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    train(solver, samplers["train"], 30)
    after = Score.of(per_task_accuracy(solver, val_tasks)).accuracy
    assert after > 0.6 and after > before + 0.05, (before, after)  # chance is 0.2 for 5 ways


def test_a_meta_batch_gradient_is_the_mean_of_its_episodes_gradients(samplers):
    tasks = samplers["train"].sample(seed=0, iteration=1, count=3)
    torch.manual_seed(0)
    solver = make_solver(small_config("protonet", batch_norm="task"), 0)

    def gradient(part):
        solver.optimizer.zero_grad(set_to_none=True)
        solver.accumulate_meta_gradient(part)
        return torch.cat([p.grad.flatten() for p in solver.model.parameters()])

    whole = gradient(tasks)
    # What two ranks would sum: each shard's mean weighted by its share of the meta-batch.
    shards = gradient(tasks[0:1]) / 3 + gradient(tasks[1:3]) * 2 / 3
    assert ((whole - shards).norm() / whole.norm()).item() < 1e-5


def test_any_number_of_ways_at_test_time(omniglot, lake_split):
    from l2l_omniglot.data.tasks import phase_samplers

    tasks = phase_samplers(omniglot, lake_split, 20, 1, 1, phases=("test",))["test"].sample(0, 0, 2)
    assert make_solver(small_config("protonet"), 0).predict(tasks).shape == (2, 20)


def test_training_tasks_have_the_shape_of_its_options():
    config = resolve_config("protonet", ways=5, shots=1, queries=1, options={"train_ways": 20, "train_queries": 4})
    assert ProtoNetSolver.train_task_shape(config) == (20, 1, 4)
    config = resolve_config("protonet", shots=5, options={"train_shots": 2})
    assert ProtoNetSolver.train_task_shape(config) == (ProtoNetSolver.Options.train_ways, 2, 5)


@pytest.mark.parametrize("options, message", [
    ({"train_ways": 1}, "train_ways of protonet must be at least 2"),
    ({"train_ways": "many"}, "train_ways of protonet must be an int"),
    ({"train_shots": 10, "train_queries": 15}, "at most 20"),
    ({"batch_norm": "group"}, "must be one of running, task"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("protonet", options=options)


def test_training_shape_beyond_the_drawings_is_refused_before_training():
    config = resolve_config("protonet", shots=10, options={"train_queries": 15})
    with pytest.raises(ConfigError, match="lower train_queries"):
        ProtoNetSolver.train_task_shape(config)


def test_the_training_loop_samples_the_solvers_training_shape(omniglot):
    from l2l_omniglot.run_tasks import RunTasks

    config = resolve_config("protonet", val_tasks=2, eval_tasks=2, options={"train_ways": 12, "train_queries": 3})
    run_tasks = RunTasks.build(config, omniglot)
    train_sampler = run_tasks.samplers["train"]
    assert (train_sampler.ways, train_sampler.shots, train_sampler.queries) == (12, 1, 3)
    assert (run_tasks.val_tasks.ways, run_tasks.val_tasks.shots, run_tasks.val_tasks.queries) == (5, 1, 1)
    assert (run_tasks.test_tasks.ways, run_tasks.test_tasks.queries) == (5, 1)
    maml = RunTasks.build(resolve_config("fomaml", val_tasks=2, eval_tasks=2), omniglot, phases=("train",))
    assert (maml.samplers["train"].ways, maml.samplers["train"].queries) == (5, 1)


def test_a_training_shape_the_split_cannot_give_names_the_solver(omniglot):
    from l2l_omniglot.run_tasks import RunTasks

    config = resolve_config("protonet", options={"train_ways": 1000})
    with pytest.raises(ConfigError, match="protonet meta-trains on 1000-way"):
        RunTasks.build(config, omniglot, phases=("train",))


DISTRIBUTED = dict(meta_batch=3, options={"train_ways": 6, "train_queries": 2})


def _protonet_step_on_rank(ranks, out: str, data_root: str) -> None:
    """One of two ranks of :func:`test_two_ranks_share_the_gradient_and_the_running_statistics` (spawned)."""
    from l2l_omniglot import load_omniglot
    from l2l_omniglot.run_tasks import RunTasks

    config = resolve_config("protonet", **DISTRIBUTED)
    torch.manual_seed(0)
    sampler = RunTasks.build(config, load_omniglot(data_root), phases=("train",)).samplers["train"]
    shard = ranks.shard(config.meta_batch)
    solver = make_solver(config)
    ranks.meta_train_step(solver, sampler.sample(config.seed, 1, len(shard), first=shard.start), config.meta_batch)
    gradient = torch.cat([p.grad.flatten() for p in solver.model.parameters()])
    torch.save({"gradient": gradient, "buffers": snapshot(solver.model)}, f"{out}.rank{ranks.rank}")


@pytest.mark.slow  # two spawned processes
def test_two_ranks_share_the_gradient_and_the_running_statistics(omniglot, data_root, tmp_path):
    from l2l_omniglot.run_tasks import RunTasks

    on_two_ranks(_protonet_step_on_rank, tmp_path / "got", str(data_root))
    got = [torch.load(tmp_path / f"got.rank{rank}", weights_only=True) for rank in range(2)]
    # Both ranks end with the same running statistics (after the same Adam step, the same weights).
    assert all(torch.equal(got[0]["buffers"][k], got[1]["buffers"][k]) for k in got[0]["buffers"])
    config = resolve_config("protonet", **DISTRIBUTED)
    torch.manual_seed(0)
    sampler = RunTasks.build(config, omniglot, phases=("train",)).samplers["train"]
    solver = make_solver(config)
    solver.meta_train_step(sampler.sample(config.seed, 1, config.meta_batch))
    gradient = torch.cat([p.grad.flatten() for p in solver.model.parameters()])
    assert ((got[0]["gradient"] - gradient).norm() / gradient.norm()).item() < 1e-5
