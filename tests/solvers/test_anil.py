"""ANIL: the inner loop adapts the head only; both engines compute the same meta-gradient."""
import pytest
import torch
import torch.nn.functional as F

from l2l_omniglot.checkpoint import load_solver, save_checkpoint
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.evaluation import Score, per_task_accuracy
from l2l_omniglot.solvers import make_solver, resolve_config
from tests.solvers.conftest import small_config, snapshot, train

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def meta_batch(samplers):
    return samplers["train"].sample(seed=0, iteration=1, count=4)


def as_float64(tasks):
    return type(tasks)(tasks.support_x.double(), tasks.support_y, tasks.query_x.double(), tasks.query_y,
                       tasks.classes)


def anil(dtype=torch.float32, seed=7, **options):
    torch.manual_seed(seed)
    solver = make_solver(small_config("anil", **options), 0)
    solver.model.to(dtype)
    return solver


def meta_gradient(solver, tasks):
    solver.optimizer.zero_grad(set_to_none=True)
    stats = solver.accumulate_meta_gradient(tasks)
    return {name: p.grad.clone() for name, p in solver.model.named_parameters() if p.grad is not None}, stats


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("engine", ["l2l", "batched"])
def test_the_inner_loop_adapts_the_head_and_nothing_else(meta_batch, engine):
    solver = anil(engine=engine, zero_head=False)
    tasks = meta_batch[:2]
    logits = solver.engine.adapted_query_logits(tasks, steps=3)
    # The same logits from the unchanged features and a head adapted by hand on them.
    with torch.no_grad():
        support = [solver.model.features(x) for x in tasks.support_x]
        query = [solver.model.features(x) for x in tasks.query_x]
    for t in range(len(tasks)):
        weight, bias = (p.detach().clone().requires_grad_() for p in solver.model.head.parameters())
        for _ in range(3):
            loss = F.cross_entropy(support[t] @ weight.T + bias, tasks.support_y[t])
            grad_weight, grad_bias = torch.autograd.grad(loss, (weight, bias))
            weight = weight - solver.options.inner_lr * grad_weight
            bias = bias - solver.options.inner_lr * grad_bias
        assert torch.allclose(logits[t], query[t] @ weight.T + bias, atol=1e-4)


@pytest.mark.parametrize("engine", ["l2l", "batched"])
def test_adaptation_leaves_the_model_unchanged(meta_batch, test_tasks, engine):
    solver = anil(engine=engine, zero_head=False)
    before = snapshot(solver.model)
    solver.predict(test_tasks)
    solver.engine.adapted_query_logits(meta_batch, steps=2)
    after = snapshot(solver.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in solver.model.parameters())


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("zero_head", [True, False], ids=["zero-head", "learned-head"])
@pytest.mark.parametrize("steps", [1, 3])
def test_batched_and_learn2learn_engines_agree_in_float64(meta_batch, first_order, zero_head, steps):
    tasks = as_float64(meta_batch)
    results = {}
    for engine in ("l2l", "batched"):
        solver = anil(torch.float64, engine=engine, first_order=first_order, zero_head=zero_head,
                      train_inner_steps=steps)
        gradient, stats = meta_gradient(solver, tasks)
        results[engine] = gradient, stats, solver.engine.adapted_query_logits(tasks, steps)
    (reference, reference_stats, reference_logits), (batched, batched_stats, batched_logits) = results.values()
    assert reference.keys() == batched.keys()
    assert any(name.startswith("head.") for name in reference) != zero_head  # a zero head is not meta-learned
    flat = lambda gradient: torch.cat([g.flatten() for g in gradient.values()])  # noqa: E731
    assert flat(reference).norm() > 0
    assert relative_error(flat(batched), flat(reference)) < TOLERANCE
    assert relative_error(batched_logits, reference_logits) < TOLERANCE
    assert batched_stats.loss == pytest.approx(reference_stats.loss, rel=TOLERANCE)


@pytest.mark.parametrize("engine", ["l2l", "batched"])
def test_second_order_differs_from_first_order(meta_batch, engine):
    tasks = as_float64(meta_batch)
    first, _ = meta_gradient(anil(torch.float64, engine=engine, first_order=True, train_inner_steps=2), tasks)
    second, _ = meta_gradient(anil(torch.float64, engine=engine, first_order=False, train_inner_steps=2), tasks)
    flat = lambda gradient: torch.cat([g.flatten() for g in gradient.values()])  # noqa: E731
    assert relative_error(flat(first), flat(second)) > 1e-2


def test_from_a_zero_head_one_step_of_anil_is_one_step_of_maml(meta_batch):
    # MAML's first step from a zero head moves only the head (the features' gradient is zero), so there
    # ANIL and MAML compute the same thing.
    tasks = as_float64(meta_batch)
    anil_gradient, _ = meta_gradient(anil(torch.float64, engine="l2l", train_inner_steps=1, inner_lr=0.3), tasks)
    torch.manual_seed(7)
    maml = make_solver(small_config("maml", engine="l2l", train_inner_steps=1, inner_lr=0.3), 0)
    maml.model.to(torch.float64)
    maml_gradient, _ = meta_gradient(maml, tasks)
    assert anil_gradient.keys() == maml_gradient.keys()
    for name in anil_gradient:
        assert torch.allclose(anil_gradient[name], maml_gradient[name], rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("options", [{"first_order": True}, {"first_order": False, "engine": "l2l"}])
def test_anil_learns_above_chance(samplers, val_tasks, options):
    solver = anil(seed=0, meta_lr=0.003, **options)
    train(solver, samplers["train"], 25)
    assert Score.of(per_task_accuracy(solver, val_tasks[:30])).accuracy > 0.45  # chance is 0.2


@pytest.mark.parametrize("zero_head", [True, False])
def test_checkpoint_round_trip(samplers, test_tasks, tmp_path, zero_head):
    solver = anil(seed=0, zero_head=zero_head)
    train(solver, samplers["train"], 2)
    save_checkpoint(tmp_path / "checkpoint.pt", solver.config, solver.state_dict(), samplers["train"].dataset.num_classes)
    torch.manual_seed(123)  # a different initialisation, fully overwritten by the load
    config, restored, _ = load_solver(tmp_path / "checkpoint.pt")
    assert config == solver.config and config.options["zero_head"] == zero_head
    assert all(torch.equal(a, b) for a, b in zip(solver.model.state_dict().values(),
                                                 restored.model.state_dict().values()))
    assert torch.equal(solver.predict(test_tasks), restored.predict(test_tasks))


def test_labels_name_the_modes():
    from l2l_omniglot.solvers import solver_label

    assert resolve_config("anil", first_order=True).options["first_order"] is True
    assert solver_label(resolve_config("anil", first_order=True)) == "anil (first order)"
    assert solver_label(resolve_config("anil", first_order=False)) == "anil"
    assert solver_label(resolve_config("anil", first_order=True, transductive=False)) == \
        "anil (first order, non-transductive)"


def test_non_transductive_prediction_uses_the_engines_per_query_batches(test_tasks):
    solver = anil(transductive=False)
    expected = solver.engine.adapted_query_logits(test_tasks, solver.options.test_inner_steps,
                                                  transductive=False).argmax(dim=-1)
    assert torch.equal(solver.predict(test_tasks), expected)


def test_a_zero_head_without_inner_steps_is_refused():
    with pytest.raises(ConfigError, match="needs train_inner_steps >= 1"):
        resolve_config("anil", train_inner_steps=0)
    assert resolve_config("anil", train_inner_steps=0, zero_head=False).options["train_inner_steps"] == 0


def test_a_20_way_task_for_a_5_way_model_is_a_clear_error(omniglot, lake_split):
    from l2l_omniglot.data.tasks import phase_samplers

    tasks = phase_samplers(omniglot, lake_split, 20, 1, 1, phases=("test",))["test"].sample(0, 0, 1)
    with pytest.raises(ConfigError, match="5-way head and cannot answer 20-way"):
        make_solver(small_config("anil"), 0).predict(tasks)


def test_engines_agree_when_each_query_is_normalised_with_the_support_set_alone(meta_batch):
    tasks = as_float64(meta_batch)
    logits = {engine: anil(torch.float64, engine=engine).engine.adapted_query_logits(tasks, 2, transductive=False)
              for engine in ("l2l", "batched")}
    assert relative_error(logits["batched"], logits["l2l"]) < TOLERANCE
    # Not the transductive logits: each query's features come from its own batch with the support set.
    transductive = anil(torch.float64, engine="l2l").engine.adapted_query_logits(tasks, 2)
    assert relative_error(logits["l2l"], transductive) > 1e-3
