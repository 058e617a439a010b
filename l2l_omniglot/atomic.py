"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Permissions: a new file gets ``0666 & ~umask``, the mode any other program the
user runs would give it; a file that is replaced keeps its own permission bits
(so ``--force`` over a 0644 file leaves a 0644 file). A write that fails, the
disk full say, leaves the previous file whole and raises
:class:`~l2l_omniglot.errors.WriteError`, one line that says what was kept.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path

from l2l_omniglot.errors import OmnimetaError, WriteError

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


def _write_error(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error) or type(error).__name__
    kept = f"the previous {path.name} is kept" if os.path.lexists(path) else f"no {path.name} was written"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space on its disk and run again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make its folder writable or write somewhere else"
    else:
        fix = "fix the cause and run again"
    failure = WriteError(f"could not write {path} ({reason}); {kept}; {fix}")
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
