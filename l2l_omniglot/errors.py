"""Errors a user can fix. The CLI prints their message on one line and exits with status 2."""


class OmnimetaError(Exception):
    """A problem with the user's input, data or files, stated with its fix."""

    #: The CLI's exit status for it.
    exit_code = 2


class DataError(OmnimetaError):
    """The data set is missing, incomplete or damaged."""


class ConfigError(OmnimetaError):
    """An option is out of range or does not fit the data or the checkpoint."""


class WriteError(OmnimetaError, OSError):
    """A file could not be written (the disk is full, the folder read-only); the previous file is kept.

    It is also an ``OSError``, so code that treats a failed write as one (the
    decode cache, whose loss only costs speed) keeps doing so.
    """


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def with_article(word: str) -> str:
    """``a float``, ``an int``: a type's name with its indefinite article, for messages."""
    return f"{'an' if str(word)[:1].lower() in 'aeiou' else 'a'} {word}"
