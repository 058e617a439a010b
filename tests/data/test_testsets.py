"""HW15 folders, answer CSVs and Lake's runs read right; their bad inputs are in tests/test_bad_files.py."""
import io
import zipfile

import pytest
import torch

from l2l_omniglot.data.images import decode_image, to_float
from l2l_omniglot.data.testsets import lake_member, read_answers, read_hw15_folder, read_lake_runs, write_submission
from tests.conftest import REPO, character_png

SAMPLE = REPO.parent / "shared" / "omniglot-test-sample"


def pixels(data: bytes) -> torch.Tensor:
    return to_float(torch.from_numpy(decode_image(io.BytesIO(data), "test")))


def write_hw15(root, tasks, ways=3, image_name="image_{}.png"):
    """An HW15 folder whose image ``i`` of task ``name`` is ``character_png(seed(name, i))``."""
    for part, offset in (("support", 0), ("query", 500)):
        for task in tasks:
            (root / part / task).mkdir(parents=True)
            for i in range(ways):
                (root / part / task / image_name.format(i)).write_bytes(seed_png(task, i, offset))
    return root


def seed_png(task: str, i: int, offset: int = 0) -> bytes:
    return character_png(1000 * int(task) + 10 * i + offset, size=28)


def test_the_sample_folder_reads_as_40_five_way_tasks_and_scores_its_own_answers(tmp_path):
    tasks = read_hw15_folder(SAMPLE / "Omniglot-test")
    assert tasks.support_x.shape == (40, 5, 1, 28, 28) and tasks.query_x.shape == (40, 5, 1, 28, 28)
    answers = read_answers(SAMPLE / "Omniglot-test-answers.csv")
    assert sorted(answers) == list(range(200))
    rows = write_submission(tmp_path / "copy.csv", torch.tensor([[answers[t * 5 + q] for q in range(5)]
                                                                  for t in range(40)]))
    assert dict(rows) == answers == read_answers(tmp_path / "copy.csv")


def test_tasks_are_numbered_by_the_integer_in_their_names(tmp_path):
    names = [str(n) for n in range(1, 11)]  # as text, "10" would sort second and take the ids of task 2
    tasks = read_hw15_folder(write_hw15(tmp_path / "test", names))
    assert tasks.support_x.shape[0] == 10
    for t, name in enumerate(names):
        assert torch.equal(tasks.support_x[t, 2], pixels(seed_png(name, 2)))
        assert torch.equal(tasks.query_x[t, 0], pixels(seed_png(name, 0, 500)))


def test_image_names_are_numbered_by_their_integer(tmp_path):
    tasks = read_hw15_folder(write_hw15(tmp_path / "test", ["0000", "0001"], image_name="image_{:02d}.png"))
    assert torch.equal(tasks.support_x[1, 1], pixels(seed_png("0001", 1)))


def test_hidden_files_are_ignored(tmp_path):
    folder = write_hw15(tmp_path / "test", ["0000", "0001"])
    (folder / "support" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "query" / "0001" / "._image_0.png").write_bytes(b"AppleDouble")
    assert read_hw15_folder(folder).query_x.shape[0] == 2


def test_answers_take_a_byte_order_mark_spaces_and_any_row_order(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_bytes("\ufeffid, class\r\n2,1\r\n0, 4\r\n\r\n1,0\r\n".encode())
    assert read_answers(path) == {0: 4, 1: 0, 2: 1}


@pytest.mark.parametrize("name", ["run07/training/class03.png", "training/class03.png", "./training/class03.png",
                                  "training\\class03.png"])
def test_lake_paths_with_or_without_a_run_prefix_name_the_member_in_the_run(name):
    assert lake_member("run07", name) == "run07/training/class03.png"


def test_lake_runs_without_a_run_prefix_resolve_to_their_own_run(tmp_path):
    """An all_runs.zip whose class_labels.txt paths lack ``runNN/`` reads like one whose paths have it."""
    answers = {1: 3, 2: 1, 3: 2}  # test item -> training class

    def write(path, prefixed):
        with zipfile.ZipFile(path, "w") as archive:
            for r, run in enumerate(("run01", "run02")):
                for c in range(1, 4):
                    archive.writestr(f"{run}/training/class{c:02d}.png", character_png(100 * r + c, size=28))
                    archive.writestr(f"{run}/test/item{c:02d}.png", character_png(100 * r + 10 + c, size=28))
                prefix = f"{run}/" if prefixed else ""
                archive.writestr(f"{run}/class_labels.txt", "".join(
                    f"{prefix}test/item{item:02d}.png {prefix}training/class{cls:02d}.png\n"
                    for item, cls in answers.items()))
        return read_lake_runs(path)

    bare, prefixed = write(tmp_path / "bare.zip", False), write(tmp_path / "prefixed.zip", True)
    assert bare.names == prefixed.names == ["run01", "run02"]
    for field in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(bare.tasks, field), getattr(prefixed.tasks, field)), field
    # run02's support is run02's drawings (not run01's), in class order; its queries sorted by their class
    for c in range(1, 4):
        assert torch.equal(bare.tasks.support_x[1, c - 1], pixels(character_png(100 + c, size=28)))
    item_of_class = {cls: item for item, cls in answers.items()}
    for c in range(1, 4):
        assert torch.equal(bare.tasks.query_x[1, c - 1], pixels(character_png(110 + item_of_class[c], size=28)))
    assert bare.tasks.query_y[1].tolist() == [0, 1, 2]


def test_lake_runs_of_the_shipped_archive(data_root):
    runs = read_lake_runs(data_root / "all_runs.zip")
    assert runs.names == [f"run{r:02d}" for r in range(1, 21)]
    assert runs.tasks.support_x.shape == (20, 20, 1, 28, 28) and runs.tasks.query_x.shape == (20, 20, 1, 28, 28)
