import pytest

from l2l_omniglot.atomic import atomic_path, write_json


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
