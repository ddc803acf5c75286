"""User-facing errors.

A :class:`UserError` is a problem with the user's input (a config key, a file, a value). The CLI
prints its message as one line and exits non-zero without a traceback. Violated internal
invariants are ordinary exceptions and keep their traceback.
"""


class UserError(Exception):
    """A problem with user input; the message names the culprit (key, file or value)."""
