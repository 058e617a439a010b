"""Plugins are imported when a command needs them: `omnimeta --help` and `omnimeta data info` import none.

Each command runs in a fresh interpreter, which then reports which modules named by the installed
``omnimeta.solvers`` and ``omnimeta.benchmarks`` entry points were imported.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

WRAPPER = textwrap.dedent("""\
    import importlib.metadata, json, sys
    from l2l_omniglot.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exit:
        status = exit.code
    targets = {point.value.partition(":")[0] for group in ("omnimeta.solvers", "omnimeta.benchmarks")
               for point in importlib.metadata.entry_points(group=group)}
    print(json.dumps({"status": status, "targets": sorted(targets),
                      "imported": sorted(targets & set(sys.modules))}))
    """)


def plugin_modules_after(*args, data_root) -> dict:
    environment = dict(os.environ, OMNIMETA_DATA=str(data_root))
    process = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=REPO, env=environment, text=True,
                             capture_output=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["data", "info", "--json"], ["evaluate", "--help"]])
def test_a_command_that_needs_no_plugin_imports_none(args, data_root):
    report = plugin_modules_after(*args, data_root=data_root)
    assert report["status"] in (0, None)
    assert "l2l_omniglot.solvers.fomaml" in report["targets"] and "l2l_omniglot.benchmarks.lake20" in report["targets"]
    assert report["imported"] == []


def test_run_help_imports_the_solvers_whose_flags_it_shows(data_root):
    report = plugin_modules_after("run", "--help", data_root=data_root)
    assert report["status"] in (0, None)
    assert {"l2l_omniglot.solvers.fomaml", "l2l_omniglot.solvers.protonet"} <= set(report["imported"])
    assert not any(module.startswith("l2l_omniglot.benchmarks.") for module in report["imported"])
