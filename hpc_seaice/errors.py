"""User-facing errors.

A :class:`UserError` is a problem with the user's input (a config key, a file, a value). The CLI
prints its message as one line and exits non-zero without a traceback. Violated internal
invariants are ordinary exceptions and keep their traceback.
"""

_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):"


class UserError(Exception):
    """A problem with user input; the message names the culprit (key, file or value).

    Raised inside a DataLoader worker, torch re-raises it in the main process as a UserError
    whose message is the worker's whole traceback; its string is still the original one line.
    """

    def __str__(self) -> str:
        text = super().__str__()
        if _WORKER_TRACEBACK not in text:
            return text
        last = text.rstrip().splitlines()[-1]
        return last.split("UserError: ", 1)[-1]


class PeerLost(RuntimeError):
    """A collective failed: another rank, or the link to it, is gone (or it timed out).

    Raised by :func:`hpc_seaice.runtime.distributed.collective` around our collectives, so that
    what happened is told by the type, not by matching the backend's message (gloo raises a plain
    RuntimeError).
    """
