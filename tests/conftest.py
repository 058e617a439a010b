"""Shared fixtures: the real Omniglot from the project's data folder, and small data built here."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


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
