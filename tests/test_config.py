import math

import pytest

from l2l_omniglot import RunConfig, resolve_config
from l2l_omniglot.errors import ConfigError


def test_solver_defaults_sit_between_the_fields_and_the_user():
    assert resolve_config("transfer").inner_lr == 0.01
    assert resolve_config("transfer", inner_lr=0.5).inner_lr == 0.5
    assert resolve_config("fomaml").inner_lr == RunConfig().inner_lr


def test_config_round_trips_through_a_dict():
    config = resolve_config("maml", ways=20, augment="rotate")
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("overrides,message", [
    (dict(meta_lr=-1.0), "--meta-lr must be a finite number"),
    (dict(inner_lr=math.nan), "--inner-lr must be a finite number"),
    (dict(iterations=0), "--iterations must be at least 1"),
    (dict(eval_tasks=0), "--eval-tasks must be at least 1"),
    (dict(split="easy"), "unknown split"),
    (dict(augment="flip"), "unknown augment"),
])
def test_out_of_range_options_name_the_option(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("fomaml", **overrides)


def test_transfer_tasks_mode_has_its_own_fine_tuning_rate():
    assert resolve_config("transfer", transfer_mode="tasks").inner_lr == 0.4
    assert resolve_config("transfer", transfer_mode="classes").inner_lr == 0.01
    assert resolve_config("transfer", transfer_mode="tasks", inner_lr=0.1).inner_lr == 0.1
