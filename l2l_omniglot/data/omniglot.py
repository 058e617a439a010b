"""Omniglot from its archives or folders into uint8 tensors, with a decode cache.

A data root holds the two sets of Lake et al. (2015), each either as the
archive ``images_<set>.zip`` or as the extracted folder ``images_<set>/``, laid
out ``<Alphabet>/characterNN/<id>_<drawer>.png``. The root comes from the
caller, else ``$OMNIMETA_DATA``, else ``~/.cache/omnimeta/omniglot``.

Decoding 32,460 PNGs takes tens of seconds, so each set is decoded once into a
cache file keyed by the source's checksum and the image size; later loads
read that file. A cache file is never trusted: one that cannot be read, or
whose arrays disagree with each other, is decoded again and replaced (see
:func:`_read_cache`). Pixels follow :mod:`l2l_omniglot.data.images` (ink = 1).

Example::

    from l2l_omniglot.data import load_omniglot
    omniglot = load_omniglot("path/to/omniglot")
    print(omniglot.background.images.shape)   # torch.Size([19280, 28, 28])
"""
from __future__ import annotations

import hashlib
import io
import os
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from l2l_omniglot.atomic import atomic_path
from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE, decode_image, refuse_oversized
from l2l_omniglot.errors import DataError, WriteError

SETS = ("background", "evaluation")
IMAGES_PER_CHARACTER = 20
CACHE_VERSION = 1

#: The canonical archives of the Omniglot repository (Brenden Lake, MIT licence)
#: and their md5 digests, as published by torchvision's Omniglot dataset.
CANONICAL_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
CANONICAL_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}


def default_cache_dir() -> Path:
    """Where omnimeta keeps decoded images: ``$OMNIMETA_CACHE`` or ``~/.cache/omnimeta``."""
    return Path(os.environ.get("OMNIMETA_CACHE") or Path.home() / ".cache" / "omnimeta")


def resolve_root(data_root: Optional[os.PathLike] = None) -> Path:
    """The data root: the argument, else ``$OMNIMETA_DATA``, else the default cache folder."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get("OMNIMETA_DATA"):
        return Path(os.environ["OMNIMETA_DATA"]).expanduser()
    return default_cache_dir() / "omniglot"


@dataclass
class OmniglotSet:
    """One Omniglot set: ``images[i]`` draws character ``labels[i]``, named ``characters[labels[i]]``."""

    name: str
    images: torch.Tensor  # uint8 [N, size, size], ink = 255
    labels: torch.Tensor  # int64 [N], index into ``characters``
    characters: list  # "Alphabet/characterNN", sorted
    source: Path = field(default=None)
    cache_path: Optional[Path] = None

    @property
    def alphabets(self) -> list:
        return sorted({name.split("/")[0] for name in self.characters})

    def summary(self) -> dict:
        return {
            "alphabets": len(self.alphabets),
            "characters": len(self.characters),
            "images": int(self.images.shape[0]),
        }


@dataclass
class Omniglot:
    """Both sets. Character ids are global: background first, then evaluation."""

    background: OmniglotSet
    evaluation: OmniglotSet
    root: Path
    load_seconds: float = 0.0

    @property
    def sets(self) -> tuple:
        return (self.background, self.evaluation)

    @property
    def characters(self) -> list:
        """Global character names, ``set/Alphabet/characterNN``."""
        return [f"{s.name}/{c}" for s in self.sets for c in s.characters]

    @property
    def alphabet_of(self) -> list:
        """For each global character id, its ``set/Alphabet``."""
        return [name.rsplit("/", 1)[0] for name in self.characters]

    def all_images(self) -> tuple:
        """``(images, global character labels)`` over both sets."""
        offset = len(self.background.characters)
        images = torch.cat([self.background.images, self.evaluation.images])
        labels = torch.cat([self.background.labels, self.evaluation.labels + offset])
        return images, labels


def find_source(root: Path, set_name: str) -> Path:
    """The archive or folder holding ``set_name`` under ``root``, or a DataError saying what to do."""
    archive = root / f"images_{set_name}.zip"
    folder = root / f"images_{set_name}"
    if archive.is_file():
        return archive
    if folder.is_dir():
        return folder
    raise DataError(
        f"Omniglot {set_name} set not found: looked for {archive} and {folder}/. "
        f"Point --data-root (or $OMNIMETA_DATA) at a folder holding images_background.zip "
        f"and images_evaluation.zip, or add --download to fetch them."
    )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_key(source: Path) -> str:
    """A cache key for an archive (its sha256) or a folder (its file list, sizes and times)."""
    if source.is_file():
        return file_digest(source)
    digest = hashlib.sha256()
    for png in sorted(source.rglob("*.png")):
        stat = png.stat()
        digest.update(f"{png.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _source_characters(source: Path, set_name: str) -> tuple:
    """``(number of PNGs, sorted character names)`` of a source, from its file names alone (no decoding)."""
    if source.is_dir():
        names = [png.relative_to(source).as_posix() for png in source.rglob("*.png")]
    else:
        prefix = f"images_{set_name}/"
        with zipfile.ZipFile(source) as archive:
            names = [n[len(prefix):] if n.startswith(prefix) else n for n in archive.namelist() if n.endswith(".png")]
    return len(names), sorted({name.rsplit("/", 1)[0] for name in names})


def _png_members(source: Path, set_name: str) -> list:
    """``(relative name "Alphabet/characterNN/file.png", PNG bytes)`` for every PNG, sorted by name."""
    if source.is_dir():
        return [(png.relative_to(source).as_posix(), png.read_bytes()) for png in sorted(source.rglob("*.png"))]
    prefix = f"images_{set_name}/"
    try:
        with zipfile.ZipFile(source) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".png"))
            members = []
            for name in names:
                refuse_oversized(archive.getinfo(name).file_size, f"{name} in {source}")
                try:
                    data = archive.read(name)
                except (zipfile.BadZipFile, OSError, EOFError) as error:
                    raise DataError(f"{source}: member {name} is corrupt ({error}); replace the archive.")
                members.append((name[len(prefix):] if name.startswith(prefix) else name, data))
            return members
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{source} is not a readable zip archive ({error}); replace it with a good copy.")


def decode_set(source: Path, set_name: str, size: int = DEFAULT_IMAGE_SIZE,
               progress: Optional[Callable[[int, int], None]] = None) -> OmniglotSet:
    """Decode every PNG of one set. Raises DataError naming the first bad file."""
    members = list(_png_members(source, set_name))
    if not members:
        raise DataError(f"{source} holds no PNG images; it is not an Omniglot {set_name} set.")
    characters = sorted({name.rsplit("/", 1)[0] for name, _ in members})
    index = {name: i for i, name in enumerate(characters)}
    images = np.empty((len(members), size, size), dtype=np.uint8)
    labels = np.empty(len(members), dtype=np.int64)
    for i, (name, data) in enumerate(members):
        images[i] = decode_image(io.BytesIO(data), f"{name} in {source}", size)
        labels[i] = index[name.rsplit("/", 1)[0]]
        if progress is not None:
            progress(i + 1, len(members))
    return OmniglotSet(set_name, torch.from_numpy(images), torch.from_numpy(labels), characters, source)


def _cache_file(cache_dir: Path, set_name: str, key: str, size: int) -> Path:
    return cache_dir / "decoded" / f"{set_name}-{key[:20]}-{size}px-v{CACHE_VERSION}.npz"


def _cache_problem(images: np.ndarray, labels: np.ndarray, characters: np.ndarray, size: int,
                   expected: tuple) -> Optional[str]:
    """Why the arrays of a decode cache cannot be what :func:`decode_set` wrote, or None if they can.

    ``expected`` is the source's ``(number of PNGs, character names)``
    (:func:`_source_characters`).
    """
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
        return f"images are {images.dtype} {images.shape}, not uint8 [N, {size}, {size}]"
    if labels.dtype != np.int64 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        return f"labels are {labels.dtype} {labels.shape}, not int64 [{images.shape[0]}]"
    if characters.dtype.kind != "U" or characters.ndim != 1 or characters.shape[0] == 0:
        return f"characters are {characters.dtype} {characters.shape}, not a list of names"
    names = characters.tolist()
    if names != sorted(set(names)):
        return "character names are not sorted and distinct"
    if images.shape[0] == 0 or labels.min() < 0 or labels.max() >= len(names):
        return f"labels fall outside the {len(names)} characters"
    if np.unique(labels).shape[0] != len(names):
        return "some characters have no image"
    if (images.shape[0], names) != (expected[0], expected[1]):
        return f"it holds {images.shape[0]} images of {len(names)} characters, the source {expected[0]} of " \
               f"{len(expected[1])}"
    return None


def _read_cache(path: Path, set_name: str, source: Path, size: int = DEFAULT_IMAGE_SIZE) -> Optional[OmniglotSet]:
    """The set stored in a decode cache file, or None when the file cannot be trusted.

    The file is checked as a whole (:func:`_cache_problem`): it must be an
    ``.npz`` holding ``images`` (uint8 ``[N, size, size]``), ``labels`` (int64
    ``[N]``, each an index into ``characters``, every character used) and
    ``characters`` (sorted, distinct names), and agree with the source's file
    names: as many images, the same characters. A file that fails to load
    (truncated, not a zip, pickled objects, a missing array) or whose arrays
    disagree is treated as a stale cache: None is returned, and
    :func:`load_set` decodes the source again and replaces the file
    atomically. Rebuilding is preferred to an error because the cache holds
    nothing the source does not, and its loss costs only the decode time.
    """
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            images, labels, characters = stored["images"], stored["labels"], stored["characters"]
    except Exception:  # noqa: BLE001 - any failure to read a cache means "decode again", never a traceback
        return None
    try:
        expected = _source_characters(source, set_name)
    except (zipfile.BadZipFile, OSError):
        return None  # the source's own problem is reported by decode_set
    if _cache_problem(images, labels, characters, size, expected) is not None:
        return None
    return OmniglotSet(set_name, torch.from_numpy(images), torch.from_numpy(labels),
                      [str(c) for c in characters.tolist()], source, path)


def load_set(root: Path, set_name: str, size: int = DEFAULT_IMAGE_SIZE,
             cache_dir: Optional[Path] = None, progress=None) -> OmniglotSet:
    """One set, from the cache when its key matches, else decoded and cached."""
    source = find_source(root, set_name)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = _cache_file(cache_dir, set_name, source_key(source), size)
    if path.is_file():
        cached = _read_cache(path, set_name, source, size)
        if cached is not None:
            return cached
    decoded = decode_set(source, set_name, size, progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, images=decoded.images.numpy(), labels=decoded.labels.numpy(),
                         characters=np.array(decoded.characters))
        decoded.cache_path = path
    except OSError:
        pass  # an unwritable cache (a WriteError is an OSError too) only costs speed
    return decoded


def loaded(omniglot):
    """The data behind ``omniglot``: the loaded data itself, a function that loads it, or None for the data at
    ``$OMNIMETA_DATA``. A function lets a caller check its input first and load (and show decoding) only then;
    a leak guard that needs no data never calls it."""
    if omniglot is None:
        return load_omniglot()
    return omniglot() if callable(omniglot) else omniglot


def load_omniglot(data_root: Optional[os.PathLike] = None, image_size: int = DEFAULT_IMAGE_SIZE,
                  cache_dir: Optional[os.PathLike] = None, progress=None) -> Omniglot:
    """Both Omniglot sets as uint8 tensors (see :class:`Omniglot`)."""
    root = resolve_root(data_root)
    if not root.exists():
        raise DataError(
            f"Omniglot data root {root} does not exist. Pass --data-root DIR (or set $OMNIMETA_DATA) "
            f"to a folder holding images_background.zip and images_evaluation.zip, or add --download."
        )
    for set_name in SETS:
        find_source(root, set_name)  # both sets must be there before any slow decode starts
    start = time.perf_counter()
    sets = [load_set(root, name, image_size, cache_dir, progress) for name in SETS]
    return Omniglot(*sets, root=root, load_seconds=time.perf_counter() - start)


def download_omniglot(data_root: Optional[os.PathLike] = None, base_url: str = CANONICAL_URL,
                      checksums: Optional[dict] = None, algorithm: str = "md5",
                      progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Fetch the missing archives into the data root, each checked against its digest.

    A download whose digest differs is deleted and raises DataError; nothing
    is left half-written under the final name.
    """
    root = resolve_root(data_root)
    checksums = CANONICAL_MD5 if checksums is None else checksums
    root.mkdir(parents=True, exist_ok=True)
    for set_name in SETS:
        if (root / f"images_{set_name}.zip").is_file() or (root / f"images_{set_name}").is_dir():
            continue
        url = f"{base_url}/images_{set_name}.zip"
        target = root / f"images_{set_name}.zip"
        digest = hashlib.new(algorithm)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as temporary:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                with open(temporary, "wb") as handle:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        handle.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
                if digest.hexdigest() != checksums[set_name]:
                    raise DataError(
                        f"{url} has {algorithm} {digest.hexdigest()}, expected {checksums[set_name]}; "
                        f"the download was discarded. Try again, or place the archive in {root} by hand."
                    )
        except WriteError:
            raise  # the disk, not the network: its message says what was kept
        except OSError as error:
            raise DataError(f"cannot download {url} ({error}); check the network or place the archive in {root}.")
    return root
