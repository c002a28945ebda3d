"""User-facing errors.

Anything a researcher can fix (a missing path, an unknown preset, a bad YAML key) raises
`EncoderlabError`; the CLI prints its message as one line and exits with status 2, no traceback.
Bugs stay ordinary exceptions so their tracebacks are not hidden.
"""

from __future__ import annotations


class EncoderlabError(Exception):
    """An error caused by the user's input; its message is one line that names the culprit."""


class ConfigError(EncoderlabError):
    """A config file or preset is invalid (unknown key, wrong type, missing path)."""


class DataError(EncoderlabError):
    """A data set on disk is missing or unreadable as a whole."""
