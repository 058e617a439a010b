"""A damaged, hostile or foreign checkpoint is refused in one line, and no pickled code runs."""
import dataclasses
import json

import pytest
import torch

from l2l_omniglot.errors import ConfigError
from tests.conftest import invoke


def test_corrupt_checkpoint_is_one_line_and_runs_no_pickle(tmp_path, data_root, recwarn):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80\x04garbage that is not a checkpoint")
    result = invoke("evaluate", run, "--data-root", data_root)
    assert result.exit_code == 2 and "is not a readable omnimeta checkpoint (its pickled data cannot be read: " \
                                     "Unsupported operand" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "weights_only" not in result.stderr
    assert [str(w.message) for w in recwarn] == []  # PyTorch's warning about the file would be more lines


def test_a_checkpoint_holding_pickled_code_is_refused(tmp_path, capsys):
    from l2l_omniglot.checkpoint import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    torch.save({"format": "omnimeta-checkpoint-v1", "config": "{}", "solver": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="not a readable omnimeta checkpoint") as caught:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(caught.value)
    assert "(print)" in message and len(message.splitlines()) == 1
    # PyTorch's own words would say how to load it anyway, running the code: never passed on
    assert "weights_only" not in message and "can still be loaded" not in message and "\x1b" not in message
    assert "pickle code ran" not in capsys.readouterr().out


def test_a_checkpoint_from_another_solver_or_ways_is_one_line(tiny_run, tmp_path, data_root):
    from l2l_omniglot.checkpoint import load_checkpoint, save_checkpoint

    config, payload = load_checkpoint(tiny_run / "checkpoint.pt")
    tasks_mode = {"mode": "tasks", "inner_lr": 0.4, "test_inner_steps": 10}
    for changes in ({"solver": "transfer", "options": tasks_mode, "ways": 20}, {"ways": 20}):
        run = tmp_path / "-".join(f"{k}{v}" for k, v in changes.items() if k != "options")
        run.mkdir()
        wrong = dataclasses.replace(config, **changes)
        save_checkpoint(run / "checkpoint.pt", wrong, payload["solver"], payload["num_train_classes"])
        result = invoke("evaluate", run, "--data-root", data_root, "--eval-tasks", "3")
        assert result.exit_code == 2, result.output
        assert "does not fit a 20-way" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert json.loads((tiny_run / "result.json").read_text())["iterations"] == 2
