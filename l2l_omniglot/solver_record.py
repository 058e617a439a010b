"""Which class wrote a checkpoint, and the check that the class that would now run it is that one.

A solver name belongs to one class (the registry refuses a second, see
:mod:`l2l_omniglot.solvers.registry`). A checkpoint records the solver's
package, that package's version and the class (``module:qualname``) that
wrote it (:func:`solver_record`); :func:`check_solver_record` refuses, in one
line, a file whose recorded class is not the class its name resolves to now,
and a recorded solver name or package that is not a plain identifier (such a
file was edited: its text would end up in messages and install hints).
Checkpoints written before the class was recorded carry no ``solver_class``
and still load.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from l2l_omniglot.config import RunConfig
from l2l_omniglot.errors import ConfigError
from l2l_omniglot.solvers.registry import IN_PROCESS, SOLVERS

#: A package or solver name as packaging (PEP 508) and entry points spell them.
PLAIN_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?\Z")


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def package_version(package: str) -> str:
    """The installed version of ``package``, or "" (a solver registered in-process has no package)."""
    try:
        return importlib.metadata.version(package)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ""


def solver_record(name: str) -> dict:
    """What a checkpoint records of the solver ``name``: package, its version, entry point and class."""
    entry = SOLVERS.entry(name)
    return {"solver_package": entry.package, "solver_version": package_version(entry.package),
            "solver_target": entry.target, "solver_class": class_path(entry.load())}


def is_plain_name(text) -> bool:
    return isinstance(text, str) and PLAIN_NAME.match(text) is not None


def missing_solver_hint(path: Path, config: RunConfig, payload: dict) -> str:
    """Why a checkpoint's solver cannot be rebuilt here, naming only a package recorded as providing it."""
    package = payload.get("solver_package")
    if package == IN_PROCESS:
        return (f"{path} needs the solver {config.solver!r}, which was registered in-process by the script that "
                f"trained it; register it again (register_solver) in the script that loads it")
    if not is_plain_name(package):
        return (f"{path} needs the solver {config.solver!r}, which is not installed here, and does not say which "
                f"package provides it; install the package that provides {config.solver!r} and retry")
    return (f"{path} needs the solver {config.solver!r}, which is not installed here; it comes from the package "
            f"{package}: install it (`pip install {package}`) and retry")


def check_solver_record(path: Path, config: RunConfig, payload: dict) -> None:
    """ConfigError (one line) unless the class that would now run ``config.solver`` is the one that wrote ``path``."""
    def altered(what: str) -> ConfigError:
        return ConfigError(f"{path} records {what}; the file was altered: retrain, or restore it from a backup")

    if not is_plain_name(config.solver):
        raise altered(f"a solver name that is not a plain identifier ({config.solver[:40]!r})")
    package = payload.get("solver_package")
    if package is not None and package != IN_PROCESS and not is_plain_name(package):
        raise altered(f"a solver package that is not a plain identifier ({str(package)[:40]!r})")
    if config.solver not in SOLVERS:
        raise ConfigError(missing_solver_hint(path, config, payload))
    recorded = payload.get("solver_class")
    if recorded is None:
        return  # written before checkpoints recorded their class
    if not isinstance(recorded, str):
        raise altered(f"a solver class that is not text ({type(recorded).__name__})")
    entry = SOLVERS.entry(config.solver)
    now = class_path(entry.load())
    if recorded != now:
        version = payload.get("solver_version")
        written_by = f"{package} {version}".strip() if is_plain_name(package) and isinstance(version, str) \
            else "another package"
        raise ConfigError(f"{path} was written by the {config.solver} class {recorded[:80]!r} ({written_by}), but "
                          f"{config.solver!r} is now {now} from {entry.package}; a checkpoint is read only by the "
                          f"class that wrote it: install the package that wrote it, or retrain")
