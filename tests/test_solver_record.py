"""A solver name belongs to one class, and a checkpoint records the class and package that wrote it (solver_record.py).

A second class under a taken name is refused, in this process or from an installed package; a checkpoint whose
recorded class was edited is read by no other class; an old checkpoint without the record still loads.
"""
import json
import os

import pytest
import torch

from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS, register_solver
from l2l_omniglot.solvers.fomaml import FOMAMLSolver
from tests.conftest import REPO, edited_checkpoint, invoke, omnimeta, one_line_error


class NotFOMAML(FOMAMLSolver):
    """Another class that calls itself fomaml."""


def test_registering_a_second_class_under_a_builtin_name_is_refused_naming_both():
    with pytest.raises(ConfigError) as refused:
        register_solver(NotFOMAML)
    message = str(refused.value)
    assert "'fomaml' is declared by 2 packages" in message and "omnimeta (l2l_omniglot.solvers.fomaml:FOMAMLSolver)" \
        in message and "tests.test_solver_record:NotFOMAML" in message and "\n" not in message
    assert SOLVERS["fomaml"] is FOMAMLSolver
    register_solver(FOMAMLSolver)  # the class that owns the name: nothing changes


@pytest.fixture
def rival_site(tmp_path):
    """A folder holding an installed distribution (its .dist-info) that declares the solver name fomaml."""
    info = tmp_path / "site" / "omnimeta_rival-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: omnimeta-rival\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[omnimeta.solvers]\nfomaml = tests.test_solver_record:NotFOMAML\n")
    return tmp_path / "site"


def test_an_installed_package_that_declares_fomaml_is_refused_by_name(rival_site, data_root, tmp_path):
    environment = dict(PYTHONPATH=os.pathsep.join([str(rival_site), str(REPO)]))
    process = omnimeta("run", "--solver", "fomaml", "--data-root", data_root, "--out", tmp_path / "run",
                       "--iterations", "2", env=environment)
    assert process.returncode == 2, process.stderr
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("Error: the solver name 'fomaml' is declared by 2 packages")
    assert "omnimeta-rival (tests.test_solver_record:NotFOMAML)" in line and "omnimeta (l2l_omniglot" in line
    assert not (tmp_path / "run").exists()
    listed = omnimeta("solvers", "--json", env=environment)
    assert "declared by 2 packages" in {row["name"]: row for row in json.loads(listed.stdout)}["fomaml"]["error"]


def test_a_checkpoint_whose_recorded_class_was_edited_is_refused(tiny_run, tmp_path, data_root):
    payload = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert payload["solver_class"] == "l2l_omniglot.solvers.fomaml:FOMAMLSolver"
    assert payload["solver_package"] == "omnimeta" and payload["solver_version"]
    edited = edited_checkpoint(tiny_run, tmp_path, lambda p: p.update(solver_class="evil.module:FOMAMLSolver"))
    one_line_error(invoke("evaluate", edited, "--data-root", data_root),
             "was written by the fomaml class 'evil.module:FOMAMLSolver'")
    one_line_error(invoke("compare", "--runs", edited, "--out", tmp_path / "cmp", "--data-root", data_root),
             "a checkpoint is read only by the class that wrote it")


@pytest.mark.parametrize("field, value, fragment", [
    ("solver_package", "evil; rm -rf ~", "a solver package that is not a plain identifier"),
    ("config", None, "a solver name that is not a plain identifier"),
])
def test_a_recorded_name_or_package_that_is_not_a_plain_identifier_is_refused(tiny_run, tmp_path, data_root, field,
                                                                               value, fragment):
    def change(payload):
        if field == "config":
            config = json.loads(payload["config"])
            config["solver"] = "fomaml\x1b[2J"
            payload["config"] = json.dumps(config)
        else:
            payload[field] = value
    one_line_error(invoke("evaluate", edited_checkpoint(tiny_run, tmp_path, change), "--data-root", data_root),
             fragment)


def test_a_checkpoint_of_today_without_the_record_still_loads(tiny_run, tmp_path, data_root):
    def today(payload):
        for key in ("solver_class", "solver_version", "leak_record"):
            del payload[key]
    old = edited_checkpoint(tiny_run, tmp_path, today)
    new = json.loads(invoke("evaluate", tiny_run, "--data-root", data_root, "--json").stdout)
    assert json.loads(invoke("evaluate", old, "--data-root", data_root, "--json").stdout) == new


def test_the_install_hint_names_only_a_package_known_to_provide_the_solver(tiny_run, tmp_path, data_root):
    def unknown(payload):
        config = json.loads(payload["config"])
        config["solver"] = "meta-sgd"
        payload["config"] = json.dumps(config)
        payload["solver_package"] = "(registered in this process)"
    line = one_line_error(invoke("evaluate", edited_checkpoint(tiny_run, tmp_path, unknown), "--data-root", data_root),
                    "registered in-process by the script that trained it")
    assert "pip install" not in line

