"""omnimeta as another project's dependency: the README's documented install, from nothing.

`make wheelhouse` writes the wheelhouse, a fresh virtual environment is made outside the
checkout, and the documented line

    pip install -c constraints.txt --find-links dist/wheelhouse omnimeta

installs omnimeta there (pip reaches the package index exactly as `make install` does).
The installed CLI and library are then used from a folder outside the checkout, so that
nothing can pass by importing the source tree.

Only torch, torchvision, triton and torch's CUDA libraries (5 of the environment's 6 GB)
are not copied: the new environment borrows this one's through a ``.pth`` line naming a
folder of links to them, so pip finds them installed, as a project that already has
torch would, and installs omnimeta, learn2learn and every other dependency itself.
Copying them took 1.5 minutes, the longest step of the suite, and tested pip, not us.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, omniglot_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # an install into a new venv

TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
#: Variables that would let the new environment see the checkout or the project's .venv.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTHONUSERBASE")


def outside_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in LEAKY}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(command, cwd: Path, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    process = subprocess.run([str(part) for part in command], cwd=cwd, env=env or outside_env(),
                             capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, (f"{' '.join(map(str, command))} exited {process.returncode}\n"
                                     f"stdout:\n{process.stdout[-4000:]}\nstderr:\n{process.stderr[-4000:]}")
    return process


#: What the new environment borrows from this one (see the module's docstring): big, and installed as they are.
BORROWED = ("torch", "torchvision", "triton")


def borrowed_packages(folder: Path) -> Path:
    """``folder`` with a link to each top-level entry (package, .dist-info) of this environment's torch,
    torchvision, triton and nvidia-* distributions."""
    folder.mkdir()
    for distribution in importlib.metadata.distributions():
        # A plugin test on the other worker may be pip-installing into this environment right now: its
        # half-written .dist-info has no metadata yet. Only torch's own distributions matter here.
        name = (distribution.metadata["Name"] or "").lower()
        if name not in BORROWED and not name.startswith("nvidia-"):
            continue
        for top in {Path(file.parts[0]) for file in distribution.files or () if file.parts[0] != ".."}:
            source, link = Path(distribution.locate_file(top)), folder / top.name
            if source.exists() and not link.exists():
                link.symlink_to(source)
    assert (folder / "torch").is_symlink(), f"no torch to borrow in {sys.prefix}"
    return folder


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """`make wheelhouse`, written to a private folder instead of dist/wheelhouse."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    run(["make", "--no-print-directory", "wheelhouse", f"WHEELHOUSE={folder}"], cwd=REPO, env=dict(os.environ))
    return folder


@pytest.fixture(scope="module")
def downstream(tmp_path_factory, wheelhouse) -> Path:
    """Another project: a fresh virtual environment and the README's install, outside the checkout."""
    project = tmp_path_factory.mktemp("other-project")
    assert not project.resolve().is_relative_to(REPO), "the other project must lie outside the checkout"
    # sys.executable is .venv's Python; venv builds the new environment on the base interpreter.
    run([sys.executable, "-m", "venv", project / "venv"], cwd=project)
    site_packages = run([project / "venv" / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path("
                         "'purelib'))"], cwd=project).stdout.strip()
    (Path(site_packages) / "borrowed.pth").write_text(f"{borrowed_packages(project / 'borrowed')}\n")
    run([project / "venv" / "bin" / "pip", "install", "-q", "-c", REPO / "constraints.txt",
         "--find-links", wheelhouse, "omnimeta"], cwd=project, timeout=1000)
    yield project
    shutil.rmtree(project / "venv", ignore_errors=True)  # pytest keeps its last three temp folders


def test_the_wheelhouse_holds_omnimeta_and_learn2learn_for_this_python_and_nothing_else(wheelhouse):
    names = sorted(path.name for path in wheelhouse.iterdir())
    assert len(names) == 2, names
    assert names[0].startswith(f"learn2learn-0.2.0-{TAG}-{TAG}-") and names[0].endswith(".whl"), names
    assert names[1].startswith("omnimeta-") and names[1].endswith("-py3-none-any.whl"), names
    with zipfile.ZipFile(wheelhouse / names[0]) as wheel:
        compiled = sorted(Path(name).name.split(".")[0] for name in wheel.namelist() if name.endswith(".so"))
    assert compiled == ["meta_dataset", "task_dataset", "transforms"]


def test_omnimeta_wheel_ships_every_file_of_the_package(wheelhouse):
    """Data files the package reads at run time (e.g. split lists) must reach an installed copy too."""
    (wheel_path,) = wheelhouse.glob("omnimeta-*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        shipped = set(wheel.namelist())
    package = REPO / "l2l_omniglot"
    files = {path.relative_to(REPO).as_posix() for path in package.rglob("*")
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    missing = sorted(files - shipped)
    assert not missing, f"in the checkout but not in {wheel_path.name} (setup.cfg [options.package_data]?): {missing}"


def test_the_install_is_the_wheelhouse_copy_not_the_checkout(downstream):
    venv = (downstream / "venv").resolve()
    probe = run([venv / "bin" / "python", "-c",
                 "import json, sys, l2l_omniglot, learn2learn; "
                 "eager = [name for name in ('gym', 'torchvision', 'scipy.stats') if name in sys.modules]; "
                 "learn2learn.vision.models.OmniglotCNN; from learn2learn.gym import MetaEnv; "
                 "print(json.dumps([l2l_omniglot.__file__, learn2learn.__file__, learn2learn.__version__, eager]))"],
                cwd=downstream)
    omnimeta_file, learn2learn_file, version, imported_eagerly = json.loads(probe.stdout)
    # tools/build-learn2learn's wheel: vision and gym are imported when looked up (above), not with the package.
    assert imported_eagerly == []
    for module_file in (omnimeta_file, learn2learn_file):
        path = Path(module_file).resolve()
        assert path.is_relative_to(venv / "lib"), path
        assert "site-packages" in path.parts, path
        assert not path.is_relative_to(REPO), path
    assert version == "0.2.0"


def test_the_installed_cli_answers_help(downstream):
    out = run([downstream / "venv" / "bin" / "omnimeta", "--help"], cwd=downstream).stdout
    assert "run" in out and "evaluate" in out


def test_the_installed_cli_lists_the_builtin_solvers(downstream):
    out = run([downstream / "venv" / "bin" / "omnimeta", "solvers"], cwd=downstream).stdout
    for solver in ("fomaml", "maml", "transfer"):
        assert solver in out, out


def test_a_tiny_run_from_python_in_the_other_project(downstream):
    """The README's Python lines, shrunk: 3 meta-iterations, 4 validation and 4 test tasks."""
    data_root = omniglot_root().resolve()
    if not (data_root / "images_background.zip").is_file():
        pytest.fail(f"the tests need Omniglot at {data_root} (set OMNIMETA_DATA)")
    out_dir = downstream / "runs" / "tiny"
    script = downstream / "tiny_run.py"
    script.write_text(textwrap.dedent("""\
        import json, sys
        from l2l_omniglot import load_omniglot, resolve_config, train_and_evaluate

        config = resolve_config("fomaml", iterations=3, val_every=3, val_tasks=4, eval_tasks=4, meta_batch=2)
        result = train_and_evaluate(config, load_omniglot(sys.argv[1]), out_dir=sys.argv[2])
        print(json.dumps({"test_accuracy": result["test_accuracy"], "test_tasks": result["test_tasks"]}))
        """))
    process = run([downstream / "venv" / "bin" / "python", script, data_root, out_dir], cwd=downstream)
    returned = json.loads(process.stdout.strip().splitlines()[-1])
    written = json.loads((out_dir / "result.json").read_text())
    assert written["test_tasks"] == returned["test_tasks"] == 4
    assert isinstance(written["test_accuracy"], float) and 0.0 <= written["test_accuracy"] <= 1.0
    assert written["test_accuracy"] == returned["test_accuracy"]


def test_learn2learn_builds_from_its_sdist_with_pip_and_build_ext(downstream, tmp_path):
    """The wheelhouse-free route the README gives: plain pip, told to run learn2learn's build_ext.

    learn2learn's setup.py compiles its .pyx sources with Cython only when build_ext is on
    its command line; otherwise it compiles the shipped Cython 0.29 C files, which fail on
    Python >= 3.11. No cache, so the sdist is really built.
    """
    run([downstream / "venv" / "bin" / "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", tmp_path,
         "--config-settings=--build-option=build_ext", "learn2learn==0.2.0"], cwd=tmp_path)
    (wheel_path,) = tmp_path.glob(f"learn2learn-0.2.0-{TAG}-{TAG}-*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        compiled = sorted(Path(name).name.split(".")[0] for name in wheel.namelist() if name.endswith(".so"))
    assert compiled == ["meta_dataset", "task_dataset", "transforms"]
