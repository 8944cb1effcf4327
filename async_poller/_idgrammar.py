"""The job-id grammar (docs/configuration.md#job-ids): what makes a string an id, and, when it is
not one, a short human reason and an escaped preview that never echoes raw bytes."""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["MAX_ID", "OUT_OF_RANGE", "parse_digits", "preview"]

MAX_ID: Final = 9223372036854775807
OUT_OF_RANGE: Final = f"out of range (max {MAX_ID})"

_PREVIEW_CHARS: Final = 40
_DIGITS: Final = "0123456789"
_SEPARATORS: Final = "_,' \t"
_MAX_ID_DIGITS: Final = len(str(MAX_ID))


def parse_digits(text: str) -> int:
    """The id `text` spells (ASCII digits only, 1..MAX_ID), or ValueError with the reason."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(_why_not_digits(text))
    significant = text.lstrip("0")
    # Length first: int() refuses strings of more than 4300 digits.
    if len(significant) > _MAX_ID_DIGITS:
        raise ValueError(OUT_OF_RANGE)
    value = int(significant or "0")
    if not 1 <= value <= MAX_ID:
        raise ValueError(OUT_OF_RANGE if value else "zero is not a job id")
    return value


def _why_not_digits(text: str) -> str:
    """Name the first thing that keeps `text` from being a plain run of ASCII digits."""
    if not text:
        return "empty"
    for char in text:
        if "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8 (argv's surrogateescape)
            return "invalid UTF-8"
        if char != "\t" and unicodedata.category(char) == "Cc":
            return f"control character U+{ord(char):04X}"
    digits = len(text) - len(text.lstrip(_DIGITS))
    char, after = text[digits], text[digits + 1 :]
    if char in "+-" and not digits:
        return "sign not allowed"
    if char == ".":
        return "not an integer (decimal point)"
    if char in "eE" and digits and _is_ascii_digits(after.removeprefix("+").removeprefix("-")):
        return "not an integer (exponent)"
    if char in "xX" and text[:digits] == "0":
        return "hexadecimal not allowed"
    if char in _SEPARATORS and digits and _is_ascii_digits(after[:1]):
        return f"separator {char!r} inside id"
    if char in " \t":
        rest = after.lstrip(" \t")
        if not digits:
            return "space before id"
        if not rest:
            return "space after id"
        return "trailing comment not allowed" if rest.startswith("#") else "inline text after id"
    if char == "#" and digits:
        return "trailing comment not allowed"
    if char == "\ufeff":
        return "byte order mark not at start of input"
    if unicodedata.decimal(char, None) is not None:
        return f"non-ASCII digit U+{ord(char):04X}"
    if char.isspace():
        return f"non-ASCII space U+{ord(char):04X}"
    if digits:
        return "inline text after id"
    if not char.isascii():
        return f"non-ASCII character U+{ord(char):04X}"
    return "not a number"


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def preview(text: str) -> str:
    """Escape `text` like `repr()` without quotes; cut it to 40 characters plus `…`."""
    pieces: list[str] = []
    length = 0
    for char in text:
        piece = _escape(char)
        length += len(piece)
        if length > _PREVIEW_CHARS:
            return "".join(pieces) + "…"
        pieces.append(piece)
    return "".join(pieces)


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0x20 <= code < 0x7F:
        return char
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return ascii(char)[1:-1]
