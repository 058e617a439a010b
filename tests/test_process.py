"""l2l_omniglot.process: what imports leave is frozen in omnimeta's own processes, and only there."""
import gc

from l2l_omniglot import process
from l2l_omniglot._learn2learn import _OnFirstUse, learn2learn


def test_learn2learn_s_late_import_is_frozen_only_in_a_process_that_froze_its_start(monkeypatch):
    freezes = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append("freeze"))
    monkeypatch.setattr(process, "_started_frozen", False)  # a user's own process
    process.freeze_late_imports()
    assert freezes == []  # its collector stays as it was
    process.freeze_imports()  # an omnimeta command's first step
    process.freeze_late_imports()
    assert freezes == ["freeze", "freeze"]
    monkeypatch.setattr(_OnFirstUse, "_module", None)  # learn2learn's first use in this process, again
    learn2learn.data
    assert freezes == ["freeze"] * 3
