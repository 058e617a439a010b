import errno
import os
import stat

import pytest

from l2l_omniglot.atomic import atomic_path, current_umask, write_json, write_text
from l2l_omniglot.errors import WriteError


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text('{"accuracy": 0.')  # torn half-way, then the writer dies
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "accuracy": 0.9\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"accuracy": 0.9})
    write_json(target, {"accuracy": 0.95})
    assert '"accuracy": 0.95' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    write_json(tmp_path / "result.json", {})
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == mode


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o664])
def test_a_replaced_file_keeps_its_own_mode(tmp_path, umask, mode):
    umask(0o077)  # would give 0600 to a new file
    target = tmp_path / "predictions.csv"
    target.write_text("id,class\n")
    target.chmod(mode)
    write_text(target, "id,class\n0,1\n")
    assert stat.S_IMODE(target.stat().st_mode) == mode and target.read_text() == "id,class\n0,1\n"


def test_writing_through_a_symbolic_link_replaces_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "kept" / "result.json"
    target.parent.mkdir()
    write_json(target, {"accuracy": 0.9})
    link = tmp_path / "result.json"
    link.symlink_to(target)
    write_json(link, {"accuracy": 0.95})
    assert link.is_symlink() and '"accuracy": 0.95' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_a_write_error_is_an_os_error_too(tmp_path, monkeypatch):
    """Callers that shrug off a failed write (the decode cache) keep catching it as an OSError."""
    def cross_device(source, target):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "replace", cross_device)
    with pytest.raises(OSError) as caught:
        write_text(tmp_path / "out.txt", "x")
    assert isinstance(caught.value, WriteError) and caught.value.errno == errno.EXDEV
    assert "no out.txt was written" in str(caught.value) and list(tmp_path.iterdir()) == []
