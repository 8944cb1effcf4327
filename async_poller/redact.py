"""Keeping secrets out of every output: a masked string type and a scrubber for text."""

from __future__ import annotations

import threading
from typing import Final

__all__ = ["MASK", "Secret", "redact", "remember"]

MASK: Final = "***"

_known: set[str] = set()
_lock = threading.Lock()


class Secret:
    """A token that shows as `***` in repr, str, logs and tracebacks.

    Creating one registers its value with `redact`, so the value is scrubbed even from text
    that was built some other way (an exception from a library, say).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)

    def reveal(self) -> str:
        """The raw value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def remember(value: str) -> None:
    """Add a secret value to those `redact` scrubs (values under 4 characters are ignored)."""
    if len(value) >= 4:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """Replace every known secret in `text` by `***`."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text
