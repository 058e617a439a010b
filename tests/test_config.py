import math

import pytest

from l2l_omniglot import RunConfig, resolve_config
from l2l_omniglot.errors import ConfigError


def test_solver_defaults_sit_between_the_fields_and_the_user():
    assert resolve_config("transfer").options["inner_lr"] == 0.01
    assert resolve_config("transfer", inner_lr=0.5).options["inner_lr"] == 0.5
    assert resolve_config("fomaml").iterations == 3000 != RunConfig().iterations
    assert resolve_config("fomaml", iterations=7).iterations == 7


def test_config_round_trips_through_a_dict():
    config = resolve_config("maml", ways=20, augment="rotate", engine="batched")
    assert RunConfig.from_dict(config.to_dict()) == config
    assert config.options["engine"] == "batched"


@pytest.mark.parametrize("overrides,message", [
    (dict(meta_lr=-1.0), "--meta-lr must be a finite number"),
    (dict(inner_lr=math.nan), "option inner_lr \\(--inner-lr\\) of fomaml must be a finite number"),
    (dict(iterations=0), "--iterations must be at least 1"),
    (dict(eval_tasks=0), "--eval-tasks must be at least 1"),
    (dict(eval_tasks=10**6), "--eval-tasks must be at most 20000"),
    (dict(seed=2**70), "--seed must be between 0 and 2\\*\\*63 - 1"),
    (dict(split="easy"), "unknown split"),
    (dict(augment="flip"), "unknown augment"),
    (dict(engine="fast"), "option engine \\(--engine\\) of fomaml must be one of l2l, batched"),
    (dict(mode="tasks"), "fomaml has no option mode; its options: inner_lr, train_inner_steps"),
    (dict(test_inner_steps="many"), "option test_inner_steps \\(--test-inner-steps\\) of fomaml must be an int"),
])
def test_out_of_range_options_name_the_option(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("fomaml", **overrides)


def test_transfer_tasks_mode_has_its_own_fine_tuning_rate():
    assert resolve_config("transfer", mode="tasks").options["inner_lr"] == 0.4
    assert resolve_config("transfer", mode="classes").options["inner_lr"] == 0.01
    assert resolve_config("transfer", mode="tasks", inner_lr=0.1).options["inner_lr"] == 0.1


def test_options_given_as_command_line_strings_are_typed_by_the_solver():
    config = resolve_config("maml", options={"zero_head": "false", "test_inner_steps": "7", "inner_lr": "0.25"})
    assert config.options["zero_head"] is False
    assert config.options["test_inner_steps"] == 7
    assert config.options["inner_lr"] == 0.25


def test_an_old_or_foreign_config_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"unknown config keys \['transfer_mode'\]"):
        RunConfig.from_dict({**RunConfig().to_dict(), "transfer_mode": "classes"})
