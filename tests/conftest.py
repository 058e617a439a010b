"""What the tests share, in one place: the real Omniglot from the project's data folder, small data built here,
the tiny-run settings, the ``omnimeta`` command line (in this process or as a subprocess), and two ranks.
"""
from __future__ import annotations

import contextlib
import io
import stat
import struct
import zlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l2l_omniglot.callbacks import RunCallbacks

REPO = Path(__file__).resolve().parents[1]

#: The tiny run a test trains unless it needs more: a few meta-steps and a few tasks, on the CPU; settings every
#: solver takes. A test that needs another setting writes ``dict(TINY, name=value)`` and says why.
TINY = dict(iterations=2, meta_batch=2, queries=1, val_every=2, val_tasks=3, eval_tasks=3, device="cpu")


class StopAtIteration(RunCallbacks):
    """A script's early stop (what Ctrl-C does): KeyboardInterrupt from a callback after ``iteration``; the state is
    saved and the run raises Interrupted."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_step(self, iteration, stats, seconds):
        if iteration == self.iteration:
            raise KeyboardInterrupt


def cli_options(settings: dict) -> list:
    """``settings`` (RunConfig names) as ``omnimeta run`` options: ``{"meta_batch": 2}`` -> ``["--meta-batch=2"]``."""
    return [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]


TINY_CLI = cli_options(TINY)


def omniglot_root() -> Path:
    """$OMNIMETA_DATA (the Makefile sets it), else ../shared/omniglot beside the checkout."""
    return Path(os.environ.get("OMNIMETA_DATA") or REPO.parent / "shared" / "omniglot")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = omniglot_root()
    if not (root / "images_background.zip").is_file():
        pytest.fail(f"the tests need Omniglot at {root} (set OMNIMETA_DATA)")
    return root


@pytest.fixture(scope="session")
def omniglot(data_root):
    from l2l_omniglot import load_omniglot

    return load_omniglot(data_root)


@pytest.fixture(scope="session")
def lake_split(omniglot):
    from l2l_omniglot import make_split

    return make_split("lake", omniglot)


def character_png(seed: int, size: int = 105) -> bytes:
    """A random one-bit drawing: black strokes on white, like Omniglot's PNGs."""
    rng = np.random.default_rng(seed)
    pixels = np.ones((size, size), dtype=bool)
    for _ in range(3):
        r, c = rng.integers(10, size - 10, size=2)
        pixels[r - 3:r + 3, max(c - 20, 0):c + 20] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_tiny_set(path: Path, set_name: str, alphabets: int = 2, characters: int = 3, drawers: int = 20) -> Path:
    """An archive in Omniglot's layout with made-up characters, for tests that must break or serve one."""
    with zipfile.ZipFile(path, "w") as archive:
        for a in range(alphabets):
            for c in range(1, characters + 1):
                for d in range(1, drawers + 1):
                    name = f"images_{set_name}/Alpha{a}/character{c:02d}/{a * 100 + c:04d}_{d:02d}.png"
                    archive.writestr(name, character_png(a * 10000 + c * 100 + d))
    return path


def snapshot(folder):
    """Every regular file under ``folder`` with its bytes and permission bits."""
    return {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in sorted(folder.rglob("*")) if p.is_file()}


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds none: enough for Pillow to open it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # one-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    write_tiny_set(root / "images_background.zip", "background")
    write_tiny_set(root / "images_evaluation.zip", "evaluation", alphabets=1)
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private, empty decode cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("OMNIMETA_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_root) -> Path:
    """One ``omnimeta run`` of fomaml with :data:`TINY` on the lake split, shared: tests copy it, never change it."""
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    result = invoke("run", "--data-root", data_root, "--out", out, *TINY_CLI)
    assert result.exit_code == 0, result.stderr
    return out


def edited_checkpoint(run_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of ``run_dir`` whose checkpoint.pt was loaded, changed by ``change(payload)`` and saved again."""
    import torch

    copy = tmp_path / f"edited-{run_dir.name}"
    copy.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "result.json"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    payload = torch.load(copy / "checkpoint.pt", weights_only=True)
    change(payload)
    torch.save(payload, copy / "checkpoint.pt")
    return copy


def train_tiny_runs(root: Path, omniglot, runs: dict, **settings) -> dict:
    """Train each ``name: (solver, overrides)`` in ``root / name`` with the shared tiny ``settings``; folders by name."""
    from l2l_omniglot import resolve_config, train_and_evaluate

    for name, (solver, overrides) in runs.items():
        train_and_evaluate(resolve_config(solver, **settings, **overrides), omniglot, root / name)
    return {name: root / name for name in runs}


def invoke(*args):
    """Run the ``omnimeta`` command line in this process with ``args`` (any objects, as strings)."""
    from click.testing import CliRunner

    from l2l_omniglot.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# -- the command line as a user's shell runs it: for signals, installed packages, several processes -------------
def start_omnimeta(*args, data_root=None, env=None, cwd=REPO) -> subprocess.Popen:
    """``python -m l2l_omniglot ARGS`` started in ``cwd`` (text pipes).

    ``env`` changes this environment: a name set to None is removed. ``data_root`` sets $OMNIMETA_DATA.
    """
    environment = dict(os.environ, **{name: value for name, value in (env or {}).items() if value is not None})
    for name in [name for name, value in (env or {}).items() if value is None]:
        environment.pop(name, None)
    if data_root is not None:
        environment["OMNIMETA_DATA"] = str(data_root)
    return subprocess.Popen([sys.executable, "-m", "l2l_omniglot", *map(str, args)], cwd=cwd, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def omnimeta(*args, data_root=None, env=None, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    """:func:`start_omnimeta` run to its end (``timeout`` guards against a hang only)."""
    process = start_omnimeta(*args, data_root=data_root, env=env, cwd=cwd)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def ok(process) -> str:
    """The stdout of a finished subprocess that must have succeeded."""
    assert process.returncode == 0, process.stderr
    return process.stdout


def one_line_error(result, fragment: str) -> str:
    """The one ``Error: ...`` line, with ``fragment``, of a command that must have exited with 2 and scored nothing.

    ``result``: :func:`invoke`'s (click's ``exit_code``) or :func:`omnimeta`'s (a finished subprocess).
    """
    status = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert status == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines
    assert "accuracy" not in result.stdout.lower()
    return lines[0]


def pip(*args):
    """pip of this environment (offline use: ``--no-deps --no-build-isolation`` installs of local folders)."""
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def pip_installed(example: str, distribution: str, tmp_path: Path):
    """docs/examples/EXAMPLE pip-installed here while the block runs (tests that do share one xdist group).

    Built from a copy, so the checkout gets no build/ or egg-info of the package.
    """
    source = tmp_path / example
    shutil.copytree(REPO / "docs" / "examples" / example, source)
    pip("install", "--no-deps", "--no-build-isolation", str(source))
    try:
        yield source
    finally:
        subprocess.run([sys.executable, "-m", "pip", "-q", "uninstall", "-y", distribution], capture_output=True)


@pytest.fixture
def installed_plugin(tmp_path):
    """The example solver plugin (docs/examples/centroid_plugin, solver ``centroid``), installed for one test."""
    with pip_installed("centroid_plugin", "omnimeta-centroid", tmp_path):
        yield


# -- two ranks: two spawned processes joined over gloo on 127.0.0.1 ----------------------------------------------
def on_two_ranks(step, out: Path, *args, timeout_s: float = 300) -> None:
    """Run ``step(ranks, out, *args)`` in two spawned processes, joined as the ranks of one run.

    ``step`` must be a module-level function (it is imported again in each process); it saves what the test
    compares under ``out`` (a path prefix). A rank that fails leaves its traceback for this test's message.
    """
    from l2l_omniglot.local_ranks import free_port

    port = free_port()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_rank_main, args=(step, rank, port, str(out), args)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout_s)  # a guard against a hang, not a speed test
    errors = [path.read_text() for path in sorted(Path(out).parent.glob(f"{Path(out).name}.rank*.error"))]
    assert [p.exitcode for p in processes] == [0, 0], errors


def _rank_main(step, rank: int, port: int, out: str, args: tuple) -> None:
    """One rank of :func:`on_two_ranks` (a spawned process, one thread like a rank of ``--nproc``)."""
    import torch

    from l2l_omniglot.distributed import Ranks
    from l2l_omniglot.process import freeze_imports

    freeze_imports()  # as every omnimeta process does: a second less at exit

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        ranks = Ranks.join("cpu", "gloo", timeout_s=60)
        step(ranks, out, *args)
        ranks.close()
    except BaseException:
        Path(f"{out}.rank{rank}.error").write_text(traceback.format_exc())
        raise


# Tests that pip-install a package into this environment, and tests that read the set of installed packages, share
# one xdist group: with `--dist loadgroup` (make test) they run one after another on one worker, never beside an
# install. test_downstream_install installs into a new environment of its own, so it runs beside them (its tests
# share a module fixture, and so a group of their own).
INSTALLING_MODULES = {"test_plugins", "test_benchmark_plugin", "test_lazy_plugins"}
INSTALLING_FIXTURES = {"installed_plugin", "installed_benchmark", "broken_plugin"}
READS_INSTALLED_PLUGINS = {"test_list_json_gives_the_seven_presets_with_numbers_sources_and_estimated_times",
                           "test_cli_reference_matches_the_click_app"}  # its help lists the installed benchmarks


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if (module in INSTALLING_MODULES or INSTALLING_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.originalname in READS_INSTALLED_PLUGINS):
            item.add_marker(pytest.mark.xdist_group("installed-packages"))
        elif item.get_closest_marker("xdist_group") is None and _uses_a_module_fixture(item):
            # A module-scoped fixture (trained runs, a comparison) is built once per worker that runs one of its
            # tests: the module's tests on one worker build it once.
            item.add_marker(pytest.mark.xdist_group(f"module-{item.module.__name__}"))
    # Groups first: each is one unit of work for one worker, and a long unit handed out last leaves the other
    # worker idle at the end; single tests, handed out last, fill the gaps (longest first, roughly).
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


def _uses_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(fixture.scope == "module" for chain in definitions for fixture in chain)
