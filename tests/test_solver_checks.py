"""No score from a broken model or answer (solver_checks.py): non-finite weights, NaN or out-of-range predictions,
a step without statistics, a state that cannot be read back, a predict that peeks at the query labels.

Each is one line, exit status 2, no accuracy and no result written: every broken solver registered in this process,
and two of them from an installed distribution (a .dist-info on PYTHONPATH), as a user of a faulty plugin meets them.
"""
import os

import pytest
import torch

from l2l_omniglot.solvers import SOLVERS, register_solver
from l2l_omniglot.solvers.fomaml import FOMAMLSolver
from tests.conftest import REPO, TINY_CLI, edited_checkpoint, invoke, omnimeta, one_line_error


def test_non_finite_weights_in_a_checkpoint_are_refused(tiny_run, tmp_path, data_root):
    def poison(payload):
        weight = next(k for k, v in payload["solver"]["model"].items() if v.is_floating_point())
        payload["solver"]["model"][weight][0] = float("nan")
    one_line_error(invoke("evaluate", edited_checkpoint(tiny_run, tmp_path, poison), "--data-root", data_root),
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
        f"{name} = tests.test_solver_checks:{name}\n" for name in BROKEN))
    return dict(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))


def check_refused(name: str, out, status: int, stdout: str, stderr: str) -> None:
    """What a run of the broken solver ``name`` must have done: one error line, exit status 2, nothing scored."""
    member, _, fragment = BROKEN[name]
    if fragment is None:
        assert status == 0, stderr
        return
    assert status == 2, stderr
    # The progress bar of the iterations done comes before it; the error is the last line, and the only one.
    errors = [line for line in stderr.strip().splitlines() if not line.startswith("meta-train ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert errors[0].startswith(f"Error: solver {name}: ") and fragment in errors[0], errors
    assert "accuracy" not in stdout.lower()
    assert not (out / "result.json").exists() and not (out / "checkpoint.pt").exists()
    if member == "state_dict":  # refused before a state was written that could not be read back
        assert not (out / "state.pt").exists()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_answer_is_one_line_exit_2_and_no_accuracy(name, data_root, tmp_path):
    """In this process, the broken solver registered as a script registers its own; the peeking one is handed no
    labels."""
    out = tmp_path / "run"
    register_solver(globals()[name])
    try:
        result = invoke("run", "--solver", name, "--data-root", data_root, "--out", out, *TINY_CLI, "--ways", "5")
    finally:
        del SOLVERS[name]
    check_refused(name, out, result.exit_code, result.stdout, result.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nanpredict", "objectstate"])
def test_a_broken_installed_plugin_is_refused_the_same_way_from_the_command_line(name, broken_plugins, data_root,
                                                                                  tmp_path):
    """As a user of a faulty plugin meets it: its entry point, a new ``omnimeta`` process (one broken answer at
    prediction and one at saving; the others take the same path)."""
    out = tmp_path / "run"
    process = omnimeta("run", "--solver", name, "--data-root", data_root, "--out", out, *TINY_CLI, "--ways", "5",
                       env=broken_plugins)
    check_refused(name, out, process.returncode, process.stdout, process.stderr)

