"""Solvers from other packages: installed, they train, compare, evaluate and predict like the built-in ones.

The example plugin of docs/examples/centroid_plugin is pip-installed into this environment (offline:
--no-deps --no-build-isolation) and driven from the command line only, as a user would.
"""
import json
import subprocess
import sys
import textwrap

import pytest

from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS, register_solver
from l2l_omniglot.solvers.registry import SolverEntry
from tests.conftest import REPO, cli_options, ok, omnimeta, one_line_error, pip

SAMPLE = REPO.parent / "shared" / "omniglot-test-sample"
#: Six meta-steps at the default meta-batch: enough for the centroid model to beat chance on the HW15 sample.
TINY = cli_options(dict(iterations=6, val_every=3, val_tasks=10, eval_tasks=10, seed=2, device="cpu"))


@pytest.mark.slow
def test_an_installed_plugin_runs_evaluates_predicts_and_compares_from_the_command_line(installed_plugin, data_root,
                                                                                           tmp_path):
    listed = {row["name"]: row for row in json.loads(ok(omnimeta("solvers", "--json", data_root=data_root)))}
    assert listed["centroid"]["package"] == "omnimeta-centroid"
    assert [o["name"] for o in listed["centroid"]["options"]] == ["normalize"]
    assert {"transfer", "fomaml", "maml"} <= set(listed)
    assert "centroid" in ok(omnimeta("run", "--help", data_root=data_root))

    centroid, fomaml = tmp_path / "centroid", tmp_path / "fomaml"
    result = json.loads(ok(omnimeta("run", "--solver", "centroid", "--option", "normalize=false", *TINY, "--out",
                                    centroid, "--json", data_root=data_root)))
    assert result["solver"] == "centroid" and result["options"] == {"normalize": False}
    assert result["test_tasks"] == 10
    ok(omnimeta("run", "--solver", "fomaml", *TINY, "--test-inner-steps", "2", "--out", fomaml,
                data_root=data_root))

    evaluated = json.loads(ok(omnimeta("evaluate", centroid, "--json", data_root=data_root)))
    assert evaluated["test_accuracy"] == result["test_accuracy"]  # same fixed tasks, same weights

    submission = tmp_path / "submission.csv"
    predicted = json.loads(ok(omnimeta("predict", centroid, SAMPLE / "Omniglot-test", "-o", submission,
                                       "--answers", SAMPLE / "Omniglot-test-answers.csv", "--json",
                                       data_root=data_root)))
    assert predicted["rows"] == len(submission.read_text().splitlines()) - 1 > 0
    assert predicted["accuracy"] > 0.2  # chance; a 6-iteration model is weak but not blind

    compared = json.loads(ok(omnimeta("compare", "--runs", centroid, "--runs", fomaml, "--out", tmp_path / "cmp",
                                      "--json", data_root=data_root)))
    assert [row["solver"] for row in compared["rows"]] == ["centroid", "fomaml"]
    assert compared["rows"][0]["test_accuracy"] == result["test_accuracy"]

    one_line_error(omnimeta("run", "--solver", "centroid", "--option", "normalize=maybe", *TINY, "--out",
                            tmp_path / "bad", data_root=data_root), "option normalize of centroid must be a bool")
    one_line_error(omnimeta("run", "--solver", "centroid", "--inner-lr", "0.1", *TINY, "--out", tmp_path / "bad",
                            data_root=data_root), "--inner-lr does not apply to centroid")

    # Without the package, a run of its solver says which package to install.
    pip("uninstall", "-y", "omnimeta-centroid")
    one_line_error(omnimeta("evaluate", centroid, data_root=data_root),
                   "needs the solver 'centroid', which is not installed here; it comes from the package "
                   "omnimeta-centroid")


@pytest.fixture
def broken_plugin(tmp_path):
    package = tmp_path / "broken_plugin"
    (package / "omnimeta_broken").mkdir(parents=True)
    (package / "omnimeta_broken" / "__init__.py").write_text("import a_module_that_is_not_installed\n")
    (package / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "omnimeta-broken"
        version = "0.1.0"
        [project.entry-points."omnimeta.solvers"]
        broken = "omnimeta_broken:BrokenSolver"
        [tool.setuptools]
        packages = ["omnimeta_broken"]
        """))
    pip("install", "--no-deps", "--no-build-isolation", str(package))
    yield
    subprocess.run([sys.executable, "-m", "pip", "-q", "uninstall", "-y", "omnimeta-broken"], capture_output=True)


@pytest.mark.slow
def test_a_broken_plugin_is_named_when_used_and_the_others_keep_working(broken_plugin, data_root, tmp_path):
    one_line_error(omnimeta("run", "--solver", "broken", *TINY, "--out", tmp_path / "run", data_root=data_root),
                   "solver plugin 'broken' (omnimeta_broken:BrokenSolver) from package omnimeta-broken cannot be "
                   "loaded (ModuleNotFoundError")
    listed = {row["name"]: row for row in json.loads(ok(omnimeta("solvers", "--json", data_root=data_root)))}
    assert "cannot be loaded" in listed["broken"]["error"]
    assert "error" not in listed["fomaml"]
    ok(omnimeta("run", "--solver", "fomaml", *TINY, "--test-inner-steps", "1", "--out", tmp_path / "ok",
                data_root=data_root))


class Incomplete:
    name = "incomplete"


def test_an_in_process_solver_must_meet_the_protocol():
    with pytest.raises(ConfigError, match="solver plugin 'incomplete' .* lacks description, Options"):
        register_solver(Incomplete)
    assert "incomplete" not in SOLVERS


def test_a_plugin_whose_class_is_missing_is_named_with_its_package(monkeypatch):
    entry = SolverEntry("ghost", "l2l_omniglot.solvers.maml:GhostSolver", "omnimeta-ghost")
    monkeypatch.setattr(SOLVERS, "_installed", {**SOLVERS._entries(), "ghost": entry})
    with pytest.raises(ConfigError, match="'ghost' .* from package omnimeta-ghost cannot be loaded \\(AttributeError"):
        SOLVERS["ghost"]
    assert SOLVERS["maml"].name == "maml"
