"""The documentation's code runs, and its CLI page matches the click app."""
import re

from l2l_omniglot.solvers import SOLVERS
from tests.conftest import REPO


def python_blocks(markdown: str) -> list:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_add_a_solver_example_runs_end_to_end(data_root, monkeypatch):
    monkeypatch.setenv("OMNIMETA_DATA", str(data_root))
    namespace = {}
    try:
        for block in python_blocks((REPO / "docs" / "solvers.md").read_text()):
            exec(compile(block, "docs/solvers.md", "exec"), namespace)
        result = namespace["result"]
        assert result["solver"] == "centroid" and result["test_tasks"] == 20
        assert result["options"] == {"normalize": False}
        assert result["test_accuracy"] > 0.3  # chance is 0.2
    finally:
        SOLVERS.pop("centroid", None)


def test_the_plugin_example_and_the_docs_hold_the_same_solver():
    plugin = (REPO / "docs" / "examples" / "centroid_plugin" / "omnimeta_centroid" / "__init__.py").read_text()
    solver_block = python_blocks((REPO / "docs" / "solvers.md").read_text())[0]
    assert solver_block.strip() in plugin


def test_cli_reference_matches_the_click_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_docs", REPO / "tools" / "cli_docs.py")
    cli_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_docs)
    assert (REPO / "docs" / "cli.md").read_text() == cli_docs.render(), "docs/cli.md is stale: run `make docs`"
    for path, command in cli_docs.commands(cli_docs.cli):
        assert f"## `{path}`" in (REPO / "docs" / "cli.md").read_text()
