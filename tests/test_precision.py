"""``--precision bfloat16``: each solver's step and answers near float32's; the library computes in it throughout.

The tolerance. bfloat16 keeps 8 significant bits, so each rounding of an
input or a weight moves it by up to 2**-9 (0.2%); a convolution accumulates in
float32, but its inputs are rounded at every one of the four blocks, forward
and backward, and a MAML-family meta-gradient also passes through the rounded
inner steps, which amplify any difference (FO-MAML's three steps at inner
learning rate 0.26 most: see tests/engines/test_equivalence.py on how
sensitive they are even in float32). Measured here, on real Omniglot tasks,
3 meta-batches each, from weights trained 20 float32 steps: the whole
meta-gradient moves by 3-10% (ProtoNet, ANIL, transfer, MAML), 12-21%
(FO-MAML); 5 steps in, up to 40% (FO-MAML). So the step is checked 20
steps in, against a bound of 30%, which a real mistake (a gradient of the
wrong layer or sign, of other tasks, float32 where bfloat16 was asked for)
misses by far; whether a bfloat16 run learns as well is judged on validation
tasks beside its float32 run (docs/results.md).
"""
import contextlib
import json

import pytest
import torch

from l2l_omniglot import make_solver, train_and_evaluate
from l2l_omniglot.callbacks import RunCallbacks
from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.precision import computing_in
from l2l_omniglot.scoring import evaluate_run, predict_folder
from tests.conftest import TINY
from tests.solvers.conftest import samplers, small_config, train, val_tasks  # noqa: F401 (fixtures)
from tests.test_predict import SAMPLE

BFLOAT16_TOLERANCE = 0.3

SOLVERS_AND_ENGINES = [("protonet", {}), ("anil", {}), ("transfer", {}), ("fomaml", {"engine": "l2l"}),
                       ("fomaml", {"engine": "batched"}), ("fomaml", {"engine": "grouped"}), ("maml", {"engine": "l2l"}),
                       ("maml", {"engine": "batched"})]


def gradient(solver) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in solver.model.parameters() if p.grad is not None])


def relative_error(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def solver_pair(samplers, name: str, options: dict):
    """The same solver in float32 and in bfloat16, with the same weights, trained 20 float32 steps."""
    pair = []
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        pair.append(make_solver(small_config(name, meta_batch=4, precision=precision, **options),
                                samplers["train"].dataset.num_classes))
    float32, bfloat16 = pair
    train(float32, samplers["train"], 20)
    bfloat16.model.load_state_dict(float32.model.state_dict())
    return float32, bfloat16


@pytest.mark.parametrize("name, options", SOLVERS_AND_ENGINES,
                         ids=[name + "-".join([""] + list(o.values())) for name, o in SOLVERS_AND_ENGINES])
def test_a_bfloat16_step_and_its_predictions_stay_near_float32(samplers, val_tasks, name, options):
    float32, bfloat16 = solver_pair(samplers, name, options)
    # Predictions first (they leave the weights as they are): measured 92-99.7% the same answers, at the same
    # accuracy to 0.01, from these weakly trained models, whose answers are often near a tie.
    answers = float32.predict(val_tasks)
    with computing_in("bfloat16", "cpu"):
        bfloat16_answers = bfloat16.predict(val_tasks)
    assert (answers == bfloat16_answers).double().mean() > 0.85
    accuracies = [(a == val_tasks.query_y).double().mean().item() for a in (answers, bfloat16_answers)]
    assert abs(accuracies[0] - accuracies[1]) < 0.05, accuracies
    tasks = samplers["train"].sample(seed=1, iteration=1, count=4)
    float32.meta_train_step(tasks)
    with computing_in("bfloat16", "cpu"):
        bfloat16.meta_train_step(tasks)
    error = relative_error(gradient(bfloat16), gradient(float32))
    # Near, but not the same: the step did compute in bfloat16.
    assert 1e-4 < error < BFLOAT16_TOLERANCE, error
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in bfloat16.model.parameters() if p.grad is not None)
    convolution = next(m for m in bfloat16.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    assert not next(m for m in float32.model.modules() if isinstance(m, torch.nn.Conv2d)
                    and m.in_channels > 1).weight.is_contiguous(memory_format=torch.channels_last)


def test_steps_inside_one_context_see_the_weights_each_step_made(samplers):
    """A run's steps all happen inside one ``computing_in``: each must compute with the weights of the step
    before (autocast's cast cache would keep the first bfloat16 copy of each weight until the context is left)."""
    tasks = [samplers["train"].sample(seed=1, iteration=i, count=4) for i in (1, 2, 3)]
    gradients = []
    for one_context in (True, False):
        _, bfloat16 = solver_pair(samplers, "transfer", {})
        with computing_in("bfloat16", "cpu") if one_context else contextlib.nullcontext():
            for batch in tasks:
                with contextlib.nullcontext() if one_context else computing_in("bfloat16", "cpu"):
                    bfloat16.meta_train_step(batch)
        gradients.append(gradient(bfloat16))
    assert torch.equal(gradients[0], gradients[1])


def test_task_threads_compute_in_the_callers_precision(samplers):
    """The l2l engine's tasks run on worker threads; autocast is per thread, so the workers must take the caller's."""
    from l2l_omniglot import threads

    tasks = samplers["train"].sample(seed=1, iteration=1, count=4)
    gradients = {}
    before = threads.task_threads().threads
    try:
        for count in (1, 2):
            threads.configure_threads(count)
            _, bfloat16 = solver_pair(samplers, "fomaml", {"engine": "l2l"})
            with computing_in("bfloat16", "cpu"):
                bfloat16.meta_train_step(tasks)
            gradients[count] = gradient(bfloat16)
    finally:
        threads.configure_threads(before)
    assert torch.equal(gradients[1], gradients[2])


class AutocastSeen(RunCallbacks):
    def __init__(self):
        self.seen = []

    def on_validation(self, iteration, score):
        self.seen.append(torch.is_autocast_enabled("cpu"))


@pytest.mark.parametrize("precision, expected", [("float32", False), ("bfloat16", True)])
def test_a_run_validates_and_is_evaluated_in_its_precision(omniglot, tmp_path, monkeypatch, precision, expected):
    callbacks = AutocastSeen()
    config = RunConfig(solver="protonet", **TINY, precision=precision).validate()
    result = train_and_evaluate(config, omniglot, tmp_path / "run", callbacks=callbacks)
    assert callbacks.seen == [expected] and 0 <= result["test_accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == precision

    import l2l_omniglot.scoring as scoring

    scored_in = []

    def recording(solver, tasks, **kwargs):
        scored_in.append(torch.is_autocast_enabled("cpu"))
        return per_task_accuracy(solver, tasks, **kwargs)

    def predicting(solver, tasks):
        scored_in.append(torch.is_autocast_enabled("cpu"))
        return predict_labels(solver, tasks)

    per_task_accuracy, predict_labels = scoring.per_task_accuracy, scoring.predict_labels
    monkeypatch.setattr(scoring, "per_task_accuracy", recording)
    monkeypatch.setattr(scoring, "predict_labels", predicting)
    report = evaluate_run(tmp_path / "run", omniglot, eval_tasks=3)
    written = predict_folder(tmp_path / "run", SAMPLE / "Omniglot-test", tmp_path / "submission.csv", omniglot=omniglot)
    assert scored_in == [expected, expected] and report["test_tasks"] == 3 and written["rows"] > 0
    assert report["precision"] == written["precision"] == precision

    # Either command may compute in the other precision than the run's, when asked.
    other = "bfloat16" if precision == "float32" else "float32"
    report = evaluate_run(tmp_path / "run", omniglot, eval_tasks=3, precision=other)
    written = predict_folder(tmp_path / "run", SAMPLE / "Omniglot-test", tmp_path / "again.csv", omniglot=omniglot,
                             precision=other)
    assert scored_in[2:] == [not expected, not expected] and report["precision"] == written["precision"] == other
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        evaluate_run(tmp_path / "run", omniglot, eval_tasks=3, precision="half")


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="unknown precision 'float16'; use one of float32, bfloat16"):
        RunConfig(precision="float16").validate()


def test_a_bfloat16_run_on_a_cpu_without_native_bfloat16_is_warned(omniglot, monkeypatch):
    from l2l_omniglot import precision
    from l2l_omniglot.training import Trainer

    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    warned = Trainer(RunConfig(solver="protonet", **TINY, precision="bfloat16").validate(), omniglot, test=False)
    plain = Trainer(RunConfig(solver="protonet", **TINY).validate(), omniglot, test=False)
    assert any("slower than float32" in w and "--precision float32" in w for w in warned.warnings)
    assert plain.warnings == []
