"""learn2learn, imported quietly.

``import learn2learn`` imports gym, which prints a deprecation notice to
stderr on every start. That notice says nothing to an omnimeta user, so it is
swallowed here, once; every module gets learn2learn from this one.
"""
import contextlib
import io
import warnings

with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import learn2learn  # noqa: E402

__all__ = ["learn2learn"]
