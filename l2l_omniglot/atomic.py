"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Permissions: a new file gets ``0666 & ~umask``, the mode any other program the
user runs would give it; a file that is replaced keeps its own permission bits
(so ``--force`` over a 0644 file leaves a 0644 file). A write that fails, the
disk full say, leaves the previous file whole and raises
:class:`~l2l_omniglot.errors.WriteError`, one line that says what was kept.

Before any work, a command checks the files it will write with
:func:`check_output_file` and :func:`check_output_folder`: a missing parent
folder, an unwritable folder, a folder where a file is expected, or an
existing file without ``--force`` is a one-line ConfigError then, not after
the work. What such a command wrote before, it reads back with
:func:`read_json_object`: a torn or foreign file is one line too.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path

from l2l_omniglot.errors import ConfigError, DataError, OmnimetaError, WriteError, first_line

#: ``errno`` values that, raised while the caller writes the temporary file,
#: mean the write itself failed (and not, say, a read the caller made).
WRITE_FAILURES = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, at once set back
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits ``path`` should end with: its own if it exists, else the umask's."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        return 0o666 & ~current_umask()


def _fix_for(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space on its disk and run again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make its folder writable or write somewhere else"
    return "fix the cause and run again"


def _write_error(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error) or type(error).__name__
    kept = f"the previous {path.name} is kept" if os.path.lexists(path) else f"no {path.name} was written"
    failure = WriteError(f"could not write {path} ({reason}); {kept}; {_fix_for(error)}")
    failure.errno = error.errno
    return failure


@contextlib.contextmanager
def atomic_path(path: os.PathLike):
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    The temporary file lives in the same folder so that the rename stays on one
    file system (and so is atomic). On an exception it is removed and ``path``
    is left as it was. Before the rename the temporary file gets ``path``'s
    permission bits if ``path`` exists, else ``0666 & ~umask``. ``path`` being a
    symbolic link, the file it points to is replaced and the link kept.

    Raises :class:`~l2l_omniglot.errors.WriteError` (also an ``OSError``) when
    the temporary file cannot be made, synced or renamed, or when the caller's
    write into it fails with one of :data:`WRITE_FAILURES` (``ENOSPC``, ...);
    other exceptions pass through unchanged.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from error
    os.close(handle)
    temporary = Path(temporary)
    committing = False
    try:
        yield temporary
        committing = True
        os.chmod(temporary, _mode_for(path))
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, OmnimetaError) and (
                committing or error.errno in WRITE_FAILURES):
            raise _write_error(path, error) from error
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_text(path: os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        Path(temporary).write_text(text)


def write_json(path: os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def append_text(path: os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (a log such as ``metrics.jsonl``); a failed write is one WriteError line.

    Appending is not atomic: a kill or a full disk can leave the last line torn,
    which the readers of such logs drop (see ``run_folder.metric_lines_up_to``).
    """
    path = Path(path)
    try:
        with open(path, "a") as handle:
            handle.write(text)
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        failure = WriteError(f"could not append to {path} ({reason}); its earlier lines are kept; "
                             f"{_fix_for(error)}")
        failure.errno = error.errno
        raise failure from None


def _try_writing_in(folder: Path, what: str) -> None:
    """Make and remove a file in ``folder``: tried, not inferred from permission bits (which root ignores)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".omnimeta-probe.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{what}: cannot write in {folder} ({reason}); make it writable or choose another "
                          f"path") from None


def check_output_file(path: os.PathLike, force: bool = False, option: str = "--output") -> Path:
    """Refuse, before any work, a file path a command could not write, or would overwrite without ``force``.

    Refused: a path that is a folder or another non-regular file (a FIFO, a
    device), an existing file without ``force``, a parent folder that is
    missing or not a folder, and a folder where a file cannot be made (tried).
    ``option`` names the option in the message (``-o``, ``--out``). A symbolic
    link is checked where it points, as :func:`atomic_path` writes there.
    """
    path = Path(path)
    what = f"{option} {path}"
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise ConfigError(f"{what} is a folder; give a file path (such as {path / 'out.csv'})")
    if target.exists() and not target.is_file():
        raise ConfigError(f"{what} is not a regular file; give the path of a file to write")
    if target.exists() and not force:
        raise ConfigError(f"{what} exists; choose another path, or add --force to replace it")
    parent = target.parent
    if not parent.exists():
        raise ConfigError(f"{what}: the folder {parent} does not exist; create it or choose another path")
    if not parent.is_dir():
        raise ConfigError(f"{what}: {parent} is not a folder; choose another path")
    _try_writing_in(parent, what)
    return path


def check_output_folder(path: os.PathLike, force: bool = False, option: str = "--out", files: tuple = ()) -> Path:
    """Refuse, before any work, a folder a command could not write ``files`` into (made with its parents).

    Refused: a path that is a file, one of ``files`` there that is a folder,
    or exists without ``force``, and a folder (or, when it is still to be
    made, its nearest existing parent) where nothing can be written (tried;
    nothing is created).
    """
    path = Path(path)
    what = f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} is a file; give a folder path")
    if path.is_dir():
        for name in files:
            check_output_file(path / name, force, option)
        if not files:
            _try_writing_in(path, what)
        return path
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is a file, so the folder cannot be made; choose another path")
    _try_writing_in(existing, what)
    return path


def check_not_an_input(output: os.PathLike, option: str, inputs: dict) -> None:
    """Refuse, with or without --force, an output path that is one of the command's inputs, or lies inside one.

    ``inputs`` maps an option name (``--answers``, ``TEST_DIR``) to its path
    (None: not given). Paths are compared where they lead (links and ``..``
    resolved), so two spellings of one file are the same file.
    """
    target = Path(os.path.realpath(output))
    for name, given in inputs.items():
        if given is None:
            continue
        source = Path(os.path.realpath(given))
        if target == source or source in target.parents:
            where = "is" if target == source else "lies inside"
            raise ConfigError(f"{option} {output} {where} {name} {given}, an input of this command, which "
                              f"writing it would change (--force does not allow that); choose another path")


def read_json_object(path: os.PathLike, fix: str, error: type = DataError) -> dict:
    """The JSON object in ``path`` (a record omnimeta wrote), or ``error``: one line naming the file and ``fix``."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as cause:
        raise error(f"{path} cannot be read ({first_line(cause, 120)}); {fix}") from None
    if not isinstance(value, dict):
        raise error(f"{path} is not a JSON object (torn or replaced?); {fix}")
    return value
