"""No silently wrong score, no silent takeover, predict without the training data, runs you can watch (issue 23).

A solver name belongs to one class; a checkpoint says which class wrote it and is refused by another. A broken
answer (NaN or out-of-range predictions, a step without statistics, a state that could not be read back) stops the
command in one line with no accuracy. predict needs only the model and the folder. Every run writes TensorBoard
events that TensorBoard's own reader finds.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from l2l_omniglot import resolve_config, train_and_evaluate
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers import SOLVERS, register_solver
from l2l_omniglot.solvers.fomaml import FOMAMLSolver
from tests.conftest import REPO, invoke, omniglot_root

SAMPLE = omniglot_root().parent / "omniglot-test-sample"
TINY = dict(iterations=4, meta_batch=2, queries=1, val_every=2, val_tasks=4, eval_tasks=4, device="cpu",
            test_inner_steps=1, train_inner_steps=1)
TINY_CLI = ["--iterations", "2", "--meta-batch", "2", "--queries", "1", "--val-every", "2", "--val-tasks", "3",
            "--eval-tasks", "3", "--device", "cpu", "--test-inner-steps", "1", "--train-inner-steps", "1"]


def one_line(result, fragment: str) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines
    assert "accuracy" not in result.stdout.lower()
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, omniglot):
    """Two tiny fomaml runs: one on the lake split, one on the random split (it meets evaluation characters)."""
    root = tmp_path_factory.mktemp("trust")
    for name, split in (("lake", "lake"), ("random", "random")):
        train_and_evaluate(resolve_config("fomaml", split=split, **TINY), omniglot, root / name)
    return {"lake": root / "lake", "random": root / "random"}


def edited_checkpoint(run_dir, tmp_path, change) -> Path:
    """A copy of ``run_dir`` whose checkpoint.pt was loaded, changed by ``change(payload)`` and saved again."""
    copy = tmp_path / f"edited-{run_dir.name}"
    copy.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "result.json"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    payload = torch.load(copy / "checkpoint.pt", weights_only=True)
    change(payload)
    torch.save(payload, copy / "checkpoint.pt")
    return copy


# -- a solver name belongs to one class -----------------------------------------------------------------------
class NotFOMAML(FOMAMLSolver):
    """Another class that calls itself fomaml."""


def test_registering_a_second_class_under_a_builtin_name_is_refused_naming_both():
    with pytest.raises(ConfigError) as refused:
        register_solver(NotFOMAML)
    message = str(refused.value)
    assert "'fomaml' is declared by 2 packages" in message and "omnimeta (l2l_omniglot.solvers.fomaml:FOMAMLSolver)" \
        in message and "tests.test_trust:NotFOMAML" in message and "\n" not in message
    assert SOLVERS["fomaml"] is FOMAMLSolver
    register_solver(FOMAMLSolver)  # the class that owns the name: nothing changes


@pytest.fixture
def rival_site(tmp_path):
    """A folder holding an installed distribution (its .dist-info) that declares the solver name fomaml."""
    info = tmp_path / "site" / "omnimeta_rival-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: omnimeta-rival\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[omnimeta.solvers]\nfomaml = tests.test_trust:NotFOMAML\n")
    return tmp_path / "site"


def test_an_installed_package_that_declares_fomaml_is_refused_by_name(rival_site, data_root, tmp_path):
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(rival_site), str(REPO)]))
    process = subprocess.run([sys.executable, "-m", "l2l_omniglot", "run", "--solver", "fomaml", "--data-root",
                              str(data_root), "--out", str(tmp_path / "run"), "--iterations", "2"], env=environment,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("Error: the solver name 'fomaml' is declared by 2 packages")
    assert "omnimeta-rival (tests.test_trust:NotFOMAML)" in line and "omnimeta (l2l_omniglot" in line
    assert not (tmp_path / "run").exists()
    listed = subprocess.run([sys.executable, "-m", "l2l_omniglot", "solvers", "--json"], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert "declared by 2 packages" in {row["name"]: row for row in json.loads(listed.stdout)}["fomaml"]["error"]


def test_a_checkpoint_whose_recorded_class_was_edited_is_refused(runs, tmp_path, data_root):
    payload = torch.load(runs["lake"] / "checkpoint.pt", weights_only=True)
    assert payload["solver_class"] == "l2l_omniglot.solvers.fomaml:FOMAMLSolver"
    assert payload["solver_package"] == "omnimeta" and payload["solver_version"]
    edited = edited_checkpoint(runs["lake"], tmp_path, lambda p: p.update(solver_class="evil.module:FOMAMLSolver"))
    one_line(invoke("evaluate", edited, "--data-root", data_root),
             "was written by the fomaml class 'evil.module:FOMAMLSolver'")
    one_line(invoke("compare", "--runs", edited, "--out", tmp_path / "cmp", "--data-root", data_root),
             "a checkpoint is read only by the class that wrote it")


@pytest.mark.parametrize("field, value, fragment", [
    ("solver_package", "evil; rm -rf ~", "a solver package that is not a plain identifier"),
    ("config", None, "a solver name that is not a plain identifier"),
])
def test_a_recorded_name_or_package_that_is_not_a_plain_identifier_is_refused(runs, tmp_path, data_root, field,
                                                                               value, fragment):
    def change(payload):
        if field == "config":
            config = json.loads(payload["config"])
            config["solver"] = "fomaml\x1b[2J"
            payload["config"] = json.dumps(config)
        else:
            payload[field] = value
    one_line(invoke("evaluate", edited_checkpoint(runs["lake"], tmp_path, change), "--data-root", data_root),
             fragment)


def test_a_checkpoint_of_today_without_the_record_still_loads(runs, tmp_path, data_root):
    def today(payload):
        for key in ("solver_class", "solver_version", "leak_record"):
            del payload[key]
    old = edited_checkpoint(runs["lake"], tmp_path, today)
    new = json.loads(invoke("evaluate", runs["lake"], "--data-root", data_root, "--json").stdout)
    assert json.loads(invoke("evaluate", old, "--data-root", data_root, "--json").stdout) == new


def test_the_install_hint_names_only_a_package_known_to_provide_the_solver(runs, tmp_path, data_root):
    def unknown(payload):
        config = json.loads(payload["config"])
        config["solver"] = "meta-sgd"
        payload["config"] = json.dumps(config)
        payload["solver_package"] = "(registered in this process)"
    line = one_line(invoke("evaluate", edited_checkpoint(runs["lake"], tmp_path, unknown), "--data-root", data_root),
                    "registered in-process by the script that trained it")
    assert "pip install" not in line


# -- no score from a broken model or answer ------------------------------------------------------------------
def test_non_finite_weights_in_a_checkpoint_are_refused(runs, tmp_path, data_root):
    def poison(payload):
        weight = next(k for k, v in payload["solver"]["model"].items() if v.is_floating_point())
        payload["solver"]["model"][weight][0] = float("nan")
    one_line(invoke("evaluate", edited_checkpoint(runs["lake"], tmp_path, poison), "--data-root", data_root),
             "holds non-finite weights of its fomaml model")


def _nan_predictions(self, tasks):
    return torch.full((len(tasks), tasks.ways * tasks.queries), float("nan"))


def _out_of_range(self, tasks):
    return FOMAMLSolver.predict(self, tasks) + tasks.ways


def _wrong_shape(self, tasks):
    return FOMAMLSolver.predict(self, tasks)[:, :1]


def _reads_query_labels(self, tasks):
    assert tasks.query_y is None, "predict was handed the query labels"
    return FOMAMLSolver.predict(self, tasks)


def _no_statistics(self, tasks):
    FOMAMLSolver.meta_train_step(self, tasks)


def _holds_an_object(self):
    return {**FOMAMLSolver.state_dict(self), "note": object()}


BROKEN = {
    "nanpredict": ("predict", _nan_predictions, "predict returned torch.float32 values, not integer labels"),
    "outofrange": ("predict", _out_of_range, "outside 0 .. 4 of a 5-way task"),
    "wrongshape": ("predict", _wrong_shape, "predict returned shape [3, 1], not [3, 5]"),
    "nostats": ("meta_train_step", _no_statistics, "meta_train_step returned NoneType, not its statistics"),
    "objectstate": ("state_dict", _holds_an_object, "its state_dict holds an object at note"),
    "peeking": ("predict", _reads_query_labels, None),
}
#: Each broken solver as a class of this module, so that an entry point can name it.
for _name, (_member, _method, _) in BROKEN.items():
    globals()[_name] = type(_name, (FOMAMLSolver,), {"name": _name, _member: _method, "__module__": __name__})


@pytest.fixture(scope="module")
def broken_plugins(tmp_path_factory):
    """An installed distribution (its .dist-info on PYTHONPATH) that provides every solver of BROKEN."""
    site = tmp_path_factory.mktemp("broken-site")
    info = site / "omnimeta_broken_answers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: omnimeta-broken-answers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[omnimeta.solvers]\n" + "".join(
        f"{name} = tests.test_trust:{name}\n" for name in BROKEN))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_answer_is_one_line_exit_2_and_no_accuracy(name, broken_plugins, data_root, tmp_path):
    """Through the command line, as a user of a faulty plugin meets it; the peeking one is handed no labels."""
    member, _, fragment = BROKEN[name]
    out = tmp_path / "run"
    process = subprocess.run([sys.executable, "-m", "l2l_omniglot", "run", "--solver", name, "--data-root",
                              str(data_root), "--out", str(out), *TINY_CLI, "--ways", "5"], env=broken_plugins,
                             capture_output=True, text=True, timeout=600)
    if fragment is None:
        assert process.returncode == 0, process.stderr
        return
    assert process.returncode == 2, process.stderr
    # The progress bar of the iterations done comes before it; the error is the last line, and the only one.
    errors = [line for line in process.stderr.strip().splitlines() if not line.startswith("meta-train ")]
    assert len(errors) == 1 and "Traceback" not in process.stderr, process.stderr
    assert errors[0].startswith(f"Error: solver {name}: ") and fragment in errors[0], errors
    assert "accuracy" not in process.stdout.lower()
    assert not (out / "result.json").exists() and not (out / "checkpoint.pt").exists()
    if member == "state_dict":  # refused before a state was written that could not be read back
        assert not (out / "state.pt").exists()


# -- predict needs only the model and the folder ---------------------------------------------------------------
def test_predict_works_without_the_data_and_still_warns_for_evaluation_characters(runs, omniglot, tmp_path,
                                                                                   monkeypatch):
    from l2l_omniglot.leaks import evaluation_overlap

    monkeypatch.delenv("OMNIMETA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/omnimeta/omniglot either
    clean = invoke("predict", runs["lake"], SAMPLE / "Omniglot-test", "-o", tmp_path / "lake.csv", "--json")
    assert clean.exit_code == 0, clean.stderr
    assert "Warning" not in clean.stderr and json.loads(clean.stdout)["evaluation_characters_seen"] == 0
    leaky = invoke("predict", runs["random"], SAMPLE / "Omniglot-test", "-o", tmp_path / "random.csv", "--json")
    assert leaky.exit_code == 0, leaky.stderr
    seen = evaluation_overlap(resolve_config("fomaml", split="random", **TINY), omniglot)
    assert seen > 0 and json.loads(leaky.stdout)["evaluation_characters_seen"] == seen
    assert f"Warning: this model trained on {seen} characters of the Omniglot evaluation set" in leaky.stderr
    assert (tmp_path / "random.csv").read_text().startswith("id,class\n")


# -- nothing the user had is lost ------------------------------------------------------------------------------
def test_an_output_that_is_an_input_is_refused_even_with_force(runs, tmp_path):
    answers = tmp_path / "answers.csv"
    answers.write_bytes((SAMPLE / "Omniglot-test-answers.csv").read_bytes())
    before = answers.read_bytes()
    one_line(invoke("predict", runs["lake"], SAMPLE / "Omniglot-test", "-o", answers, "--answers", answers,
                    "--force"), "is --answers")
    one_line(invoke("predict", runs["lake"], SAMPLE / "Omniglot-test", "-o", tmp_path / "." / "answers.csv",
                    "--answers", answers, "--force"), "--force does not allow that")
    assert answers.read_bytes() == before
    one_line(invoke("compare", "--runs", runs["lake"], "--out", runs["lake"], "--force"), "is --runs")


def test_resume_keeps_unreadable_metrics_lines_in_a_side_file(omniglot, tmp_path):
    from l2l_omniglot.callbacks import RunCallbacks
    from l2l_omniglot.training import Interrupted, resume_training

    class StopAtTwo(RunCallbacks):
        def on_step(self, iteration, stats, seconds):
            if iteration == 2:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        train_and_evaluate(resolve_config("fomaml", **TINY), omniglot, out, callbacks=StopAtTwo())
    with open(out / "metrics.jsonl", "a") as metrics:
        metrics.write('{"iteration": 3, "loss": 0.5, "train_acc')  # torn by a kill
    told = []

    class Listen(RunCallbacks):
        def on_warning(self, message):
            told.append(message)

    resume_training(out, omniglot, callbacks=Listen())
    assert (out / "metrics-unreadable.txt").read_text() == '{"iteration": 3, "loss": 0.5, "train_acc\n'
    assert any("kept in" in message and "metrics-unreadable.txt" in message for message in told)


# -- runs you can watch ----------------------------------------------------------------------------------------
def test_tensorboard_s_reader_finds_the_validation_curve_and_settings(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["lake"]))
    events.Reload()
    metrics = [json.loads(line) for line in (runs["lake"] / "metrics.jsonl").read_text().splitlines()]

    def curve(tag):
        points = events.Scalars(tag)
        return [e.step for e in points], [e.value for e in points]

    steps, values = curve("val/accuracy")
    assert steps == [m["iteration"] for m in metrics if "val_accuracy" in m] == [2, 4]
    assert values == pytest.approx([m["val_accuracy"] for m in metrics if "val_accuracy" in m], rel=1e-6)
    steps, values = curve("train/loss")
    assert steps == [1, 2, 3, 4] and values == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    assert curve("train/accuracy")[1] == pytest.approx([m["train_accuracy"] for m in metrics], rel=1e-6)
    assert all(seconds > 0 for seconds in curve("train/seconds_per_step")[1])
    config = resolve_config("fomaml", **TINY)
    rates = curve("train/learning_rate")[1]
    assert len(rates) == 4 and all(0 <= rate <= config.meta_lr for rate in rates)
    assert events.PluginTagToContent("hparams")  # the run's settings, for TensorBoard's HPARAMS view


def test_compare_rows_of_one_solver_are_told_apart(omniglot, tmp_path):
    from l2l_omniglot.compare import compare_rows, score_runs

    for name, inner_lr in (("slow", 0.1), ("fast", 0.4)):
        train_and_evaluate(resolve_config("fomaml", inner_lr=inner_lr, **TINY), omniglot, tmp_path / name)
    rows = compare_rows(score_runs([tmp_path / "slow", tmp_path / "fast"], omniglot))
    assert [row["solver"] for row in rows] == ["fomaml (slow; inner_lr=0.1)", "fomaml (fast; inner_lr=0.4)"]


def test_an_option_given_twice_is_refused(data_root, tmp_path):
    one_line(invoke("run", "--solver", "fomaml", "--option", "inner_lr=0.1", "--option", "inner_lr=0.2",
                    "--data-root", data_root, "--out", tmp_path / "a", *TINY_CLI), "inner_lr is given twice")
    one_line(invoke("run", "--solver", "fomaml", "--inner-lr", "0.1", "--option", "inner_lr=0.2",
                    "--data-root", data_root, "--out", tmp_path / "b", *TINY_CLI), "inner_lr of fomaml is given twice")
