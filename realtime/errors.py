"""Exceptions. Every user-facing failure is a ``RealtimeError`` whose message is one line naming the fix."""

from __future__ import annotations

# Exit codes of every command.
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class RealtimeError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with code 2."""


class SourceError(RealtimeError):
    """A video source cannot be opened or read."""


class WeightsError(RealtimeError):
    """Model weights or a checkpoint are missing, corrupt or of the wrong kind."""


class BackendUnavailable(RealtimeError):
    """An inference backend's packages or hardware are missing."""


class DataError(RealtimeError):
    """Training/evaluation data has the wrong format or shape."""


class PoseServerUnavailable(Exception):
    """The remote pose server (Triton) is unreachable, too slow or restarting; the message is one line.

    Not a ``RealtimeError``: nothing is wrong with the user's input, and the caller keeps running (shows the
    outage, retries later) instead of exiting.
    """
