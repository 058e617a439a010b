"""`omnimeta compare` is one library call: the CLI and a script calling `compare_solvers` write the same compare.json."""
import json

import pytest

from l2l_omniglot import ConfigError, compare_solvers
from l2l_omniglot.solvers.flags import configs_from_options
from tests.conftest import TINY, cli_options, invoke, train_tiny_runs

SETTINGS = dict(TINY, iterations=4, val_tasks=4, eval_tasks=8)  # two validations: a curve to compare
SETTINGS_CLI = cli_options(SETTINGS)  # the same settings, as the command line takes them
#: What two trainings of the same config may differ in: the clock, the memory, and where the run folder is.
MEASURED = ("run", "train_seconds", "iterations_per_second", "peak_rss_mb")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, omniglot):
    root = tmp_path_factory.mktemp("finished")
    return train_tiny_runs(root, omniglot, {"protonet": ("protonet", {}), "fomaml": ("fomaml", {"test_inner_steps": 2})},
                           **SETTINGS)


def test_compare_of_finished_runs_writes_the_same_compare_json_from_the_cli_and_from_a_script(finished, omniglot,
                                                                                              data_root, tmp_path):
    runs = [finished["protonet"], finished["fomaml"]]
    from_cli = invoke("compare", "--runs", runs[0], "--runs", runs[1], "--out", tmp_path / "cli", "--data-root",
                      data_root, "--json")
    assert from_cli.exit_code == 0, from_cli.stderr
    comparison = compare_solvers([], tmp_path / "script", runs=runs, omniglot=omniglot)
    written = (tmp_path / "cli" / "compare.json").read_text()
    assert written == (tmp_path / "script" / "compare.json").read_text()
    assert json.loads(written) == {"title": comparison["title"], "rows": comparison["rows"]}
    assert json.loads(from_cli.stdout)["rows"] == comparison["rows"]
    assert [row["solver"].split()[0] for row in comparison["rows"]] == ["protonet", "fomaml"]
    assert sorted(p.rsplit("/", 1)[1] for p in comparison["files"]) == ["compare.csv", "compare.json", "compare.md",
                                                                         "curves.png"]


def test_compare_that_trains_gives_the_same_rows_from_the_cli_and_from_a_script(data_root, tmp_path):
    from_cli = invoke("compare", "--solvers", "protonet", "--out", tmp_path / "cli", "--data-root", data_root,
                      "--seed", "3", *SETTINGS_CLI)
    assert from_cli.exit_code == 0, from_cli.stderr
    training = {"seed": 3, **SETTINGS, "option_values": ()}
    configs = configs_from_options(["protonet"], training)
    compare_solvers(configs, tmp_path / "script", data_root=data_root, eval_tasks=8)
    rows = [json.loads((tmp_path / where / "compare.json").read_text())["rows"] for where in ("cli", "script")]
    same = [[{k: v for k, v in row.items() if k not in MEASURED} for row in found] for found in rows]
    assert same[0] == same[1] and same[0][0]["test_tasks"] == 8 and same[0][0]["iterations"] == 4
    for where in ("cli", "script"):  # each trained its own run in its --out
        assert json.loads((tmp_path / where / "protonet" / "config.json").read_text())["seed"] == 3


def test_compare_refuses_before_any_work(finished, tmp_path):
    with pytest.raises(ConfigError, match="nothing to compare"):
        compare_solvers([], tmp_path / "none")
    out = tmp_path / "twice"
    out.mkdir()
    (out / "compare.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a comparison; choose another folder or add --force"):
        compare_solvers([], out, runs=[finished["protonet"]], omniglot=lambda: pytest.fail("data was loaded"))
