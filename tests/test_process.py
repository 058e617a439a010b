"""l2l_omniglot.process: what imports leave is frozen in omnimeta's own processes, and only there."""
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Prints the frozen count before and after learn2learn's first use, with or without a frozen start.
PROBE = """
import gc, sys
from l2l_omniglot import process
from l2l_omniglot._learn2learn import learn2learn
if sys.argv[1] == "omnimeta":
    process.freeze_imports()
before = gc.get_freeze_count()
learn2learn.data
print(before, gc.get_freeze_count())
"""


@pytest.mark.parametrize("started", ["omnimeta", "user"])
def test_learn2learn_s_late_import_is_frozen_only_in_a_process_that_froze_its_start(started):
    done = subprocess.run([sys.executable, "-c", PROBE, started], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    if started == "omnimeta":
        assert before > 0 and after > before + 10_000  # learn2learn with torchvision, scipy and gym
    else:
        assert before == after == 0  # a user's process keeps its collector as it was
