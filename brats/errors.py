"""The toolkit's error base class: anything raised as a :class:`BratsError` is a user-facing problem.

The command-line tools print its message on one line (no traceback) and exit with status 1.
"""


class BratsError(Exception):
    """A user-facing error (bad input, bad config, missing file); the message says what and where."""
