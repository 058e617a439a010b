"""Errors a user can fix. The CLI prints their message on one line and exits with status 2.

Also the helpers that word such messages (the first line of an error, how two records differ)."""

import json


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


def describe_differences(before, after, where_before: str, where_after: str, limit: int = 3) -> str:
    """The keys in which two records (dicts, as JSON keeps them) differ, for a message: ``"seed: 0 in
    config.json, 1 now; ..."``, at most ``limit`` keys. Values compare as JSON keeps them, so a tuple and the
    list read back from a file are the same."""
    before, after = as_json_value(before), as_json_value(after)
    if before is None:
        return f"the record {where_before} is not readable"
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return "they differ"
    keys = sorted(key for key in {*before, *after} if before.get(key) != after.get(key))
    shown = "; ".join(f"{key}: {json.dumps(before.get(key))} {where_before}, {json.dumps(after.get(key))} "
                      f"{where_after}" for key in keys[:limit])
    return shown + ("; ..." if len(keys) > limit else "")


def as_json_value(value):
    """``value`` as it reads back from a JSON file (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))
