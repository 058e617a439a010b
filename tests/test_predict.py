"""predict needs only the model and the test folder, and still warns of a model that saw evaluation characters."""
import json

import pytest

from l2l_omniglot import resolve_config, train_and_evaluate
from tests.conftest import TINY, invoke, omniglot_root

SAMPLE = omniglot_root().parent / "omniglot-test-sample"


@pytest.fixture(scope="module")
def random_split_run(tmp_path_factory, omniglot):
    """A tiny fomaml run on the random split: it trains on characters of the evaluation set."""
    out = tmp_path_factory.mktemp("random-split") / "run"
    train_and_evaluate(resolve_config("fomaml", split="random", **TINY), omniglot, out)
    return out


def test_predict_works_without_the_data_and_still_warns_for_evaluation_characters(tiny_run, random_split_run,
                                                                                   omniglot, tmp_path, monkeypatch):
    from l2l_omniglot.leaks import evaluation_overlap

    monkeypatch.delenv("OMNIMETA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/omnimeta/omniglot either
    clean = invoke("predict", tiny_run, SAMPLE / "Omniglot-test", "-o", tmp_path / "lake.csv", "--json")
    assert clean.exit_code == 0, clean.stderr
    assert "Warning" not in clean.stderr and json.loads(clean.stdout)["evaluation_characters_seen"] == 0
    leaky = invoke("predict", random_split_run, SAMPLE / "Omniglot-test", "-o", tmp_path / "random.csv", "--json")
    assert leaky.exit_code == 0, leaky.stderr
    seen = evaluation_overlap(resolve_config("fomaml", split="random", **TINY), omniglot)
    assert seen > 0 and json.loads(leaky.stdout)["evaluation_characters_seen"] == seen
    assert f"Warning: this model trained on {seen} characters of the Omniglot evaluation set" in leaky.stderr
    assert (tmp_path / "random.csv").read_text().startswith("id,class\n")

