"""Errors a user can fix. The CLI prints their message on one line and exits with status 2."""


class OmnimetaError(Exception):
    """A problem with the user's input, data or files, stated with its fix."""


class DataError(OmnimetaError):
    """The data set is missing, incomplete or damaged."""


class ConfigError(OmnimetaError):
    """An option is out of range or does not fit the data or the checkpoint."""
