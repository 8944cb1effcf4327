"""The exception tree. Every error the library raises on purpose derives from `AsyncPollerError`.

    AsyncPollerError
    ├── ConfigError        bad settings or arguments (exit 2)
    │   └── StateError     the state file cannot be used (exit 2)
    ├── InputError         job-id input that cannot be used (exit 2)
    ├── StateLocked        another run holds the state file (exit 5)
    ├── OutputError        the events cannot be written: disk full, I/O error (exit 74)
    ├── AuthError          credentials rejected or unobtainable (exit 4)
    └── FatalResponseError an answer refused for safety: TLS failure, a redirect (exit 6)

Messages are written for the person running the tool and never contain a token.
"""

from __future__ import annotations

__all__ = [
    "AsyncPollerError",
    "AuthError",
    "ConfigError",
    "FatalResponseError",
    "InputError",
    "OutputError",
    "StateError",
    "StateLocked",
]


class AsyncPollerError(Exception):
    """Base class of every error async-poller raises on purpose."""


class ConfigError(AsyncPollerError):
    """A setting or argument is invalid; the message says which and how to fix it."""


class InputError(AsyncPollerError):
    """The job-id input cannot be used (unreadable, too large, or no valid id)."""


class AuthError(AsyncPollerError):
    """Authentication or authorization failed for the whole run."""


class FatalResponseError(AsyncPollerError):
    """The API answered in a way no job can recover from (for example a redirect)."""


class OutputError(AsyncPollerError):
    """The events cannot be written (a full disk, `/dev/full`, an I/O error): the run stops,
    and no partial line is left behind."""


class StateError(ConfigError):
    """The state file cannot be used: missing, unreadable, read-only, damaged, or too new."""


class StateLocked(AsyncPollerError):
    """Another run holds the state file (exit 5)."""
