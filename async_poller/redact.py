"""Keeping secrets out of every output: a masked string type and a scrubber for text.

Every token the run knows (the refresh token, each access token obtained) is registered
with `remember`; `redact` then masks it wherever text that did not come from us (an API
answer, a proxy's error page, a library's exception) shows it: raw, base64 (standard or
URL-safe, padded or not, at any alignment inside a longer base64 string) or percent-encoded.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Final
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Secret", "redact", "redact_value", "remember"]

MASK: Final = "***"
MIN_SECRET: Final = 4
"""Shorter values are not registered: masking them would garble ordinary text."""
MIN_ENCODED: Final = 12
"""Encoded forms are masked only for secrets this long: short ones match by chance."""

_known: set[str] = set()
_forms: list[str] = []
"""Every form of every known secret, longest first (what `redact` looks for)."""
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
    if len(value) < MIN_SECRET:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        forms = set(_forms) | {value}
        if len(value) >= MIN_ENCODED:
            forms |= _encoded_forms(value)
        _forms[:] = sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    """Replace every known secret in `text`, raw or encoded, by `***`."""
    with _lock:
        forms = list(_forms)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_value(value: Any) -> Any:
    """`value` (JSON-like: str, list, dict, scalars) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    if isinstance(value, dict):
        return {redact_value(key): redact_value(item) for key, item in value.items()}
    return value


def _encoded_forms(value: str) -> set[str]:
    raw = value.encode("utf-8")
    forms = {quote(value, safe=""), quote_plus(value, safe=""), quote(value, safe="/")}
    forms |= {form.lower() for form in set(forms) if "%" in form}
    for offset in range(3):
        # Inside a longer base64 string the token starts at any of three alignments; the
        # characters that also encode a neighbour's bits differ, the run between them not.
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = -(-offset * 8 // 6)
        core = encoded[start : (offset + len(raw)) * 8 // 6]
        forms |= {core, core.translate(_URLSAFE)}
    whole = base64.b64encode(raw).decode("ascii")
    for padded in (whole, whole.translate(_URLSAFE)):
        forms |= {padded, padded.rstrip("=")}
    return {form for form in forms if len(form) >= MIN_ENCODED}


_URLSAFE: Final = str.maketrans("+/", "-_")
