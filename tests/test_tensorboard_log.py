"""Every run writes TensorBoard events (tensorboard_log.py) that TensorBoard's own reader finds."""
import json

import pytest

from l2l_omniglot import resolve_config
from tests.conftest import TINY


def test_tensorboard_s_reader_finds_the_validation_curve_and_settings(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run))
    events.Reload()
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]

    def curve(tag):
        points = events.Scalars(tag)
        return [e.step for e in points], [e.value for e in points]

    steps, values = curve("val/accuracy")
    assert steps == [m["iteration"] for m in metrics if "val_accuracy" in m] == [2]
    assert values == pytest.approx([m["val_accuracy"] for m in metrics if "val_accuracy" in m], rel=1e-6)
    steps, values = curve("train/loss")
    assert steps == [1, 2] and values == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    assert curve("train/accuracy")[1] == pytest.approx([m["train_accuracy"] for m in metrics], rel=1e-6)
    assert curve("train/seconds_per_step")[0] == [1, 2]  # one point per step (its value is a timing: bench/)
    config = resolve_config("fomaml", **TINY)
    rates = curve("train/learning_rate")[1]
    assert len(rates) == 2 and all(0 <= rate <= config.meta_lr for rate in rates)
    assert events.PluginTagToContent("hparams")  # the run's settings, for TensorBoard's HPARAMS view
