"""Job ids: read them from text or JSON sources, validate them, and say why a line is not one.

Text is streamed in chunks: memory holds the ids, the set used to drop duplicates, and at most
`MAX_LINE_BYTES` of the current line (the rest of an overlong line is skipped as it streams past,
so a gigabyte without a newline costs one chunk). JSON is parsed whole, hence `MAX_JSON_BYTES`.
The grammar itself (what makes a string an id, and why not) lives in `_idgrammar`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import chain
from typing import BinaryIO, Final, Literal

import orjson

from ._idgrammar import MAX_ID, OUT_OF_RANGE, parse_digits, preview
from .errors import InputError

__all__ = [
    "MAX_ID",
    "MAX_JSON_BYTES",
    "MAX_LINE_BYTES",
    "InvalidLine",
    "JobIds",
    "format_invalid",
    "parse_id",
    "read_ids",
]

MAX_LINE_BYTES: Final = 4096
MAX_JSON_BYTES: Final = 256 * 1024 * 1024

_CHUNK_BYTES: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"
_JSON_SPACE: Final = b" \t\r\n"
_JSON_TYPE_NAMES: Final = {type(None): "null", list: "array", dict: "object", bool: "boolean"}


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """One input line (or JSON element, or `--id` value) that is not a job id."""

    source: str
    """The file path as given, `<stdin>` for `-`, `--id` for command-line ids."""
    line: int
    """1-based line number; for JSON and `--id`, the 1-based position in the list of ids."""
    preview: str
    """The line escaped like `repr()` without quotes, cut to 40 characters plus `…`."""
    reason: str
    """Why it is not an id, e.g. `sign not allowed`."""


@dataclass(frozen=True, slots=True)
class JobIds:
    """Everything read from the inputs: the ids to poll and what was wrong with the rest."""

    ids: list[int]
    """Distinct valid ids in the order they first appeared."""
    invalid: list[InvalidLine]
    """The invalid lines, in input order."""
    duplicates: int
    """How many valid ids repeated one seen before (each id is polled once)."""


def parse_id(text: str) -> int:
    """Parse one id as a text line or `--id` holds it; raise `ValueError(reason)` otherwise."""
    return parse_digits(text.strip(" \t"))


def format_invalid(invalid: InvalidLine) -> str:
    """Render an invalid line for stderr: `ids.txt:3: 'abc\\x00' (control character U+0000)`."""
    return f"{invalid.source}:{invalid.line}: '{invalid.preview}' ({invalid.reason})"


def read_ids(
    sources: Sequence[str] = (),
    *,
    ids: Sequence[str] = (),
    input_format: Literal["auto", "text", "json"] = "auto",
    stdin: BinaryIO | None = None,
) -> JobIds:
    """Read `--id` values, then each source (a path, or `-` for `stdin`), into one `JobIds`.

    Stdin is read only where a source says `-`, and once however often `-` is given. An empty
    `ids` in the result is for the caller to judge. Raises `InputError` for a source that cannot
    be read, JSON that is malformed, too large or of an unexpected shape.
    """
    found: list[int] = []
    seen: set[int] = set()
    invalid: list[InvalidLine] = []
    duplicates = 0
    for item in chain(_command_line_items(ids), _source_items(sources, input_format, stdin)):
        if isinstance(item, InvalidLine):
            invalid.append(item)
        elif item in seen:
            duplicates += 1
        else:
            seen.add(item)
            found.append(item)
    return JobIds(found, invalid, duplicates)


def _command_line_items(ids: Sequence[str]) -> Iterator[int | InvalidLine]:
    for position, text in enumerate(ids, start=1):
        try:
            yield parse_id(text)
        except ValueError as exc:
            yield InvalidLine("--id", position, preview(text), str(exc))


def _source_items(
    sources: Sequence[str], input_format: str, stdin: BinaryIO | None
) -> Iterator[int | InvalidLine]:
    stdin_read = False
    for source in sources:
        if source == "-":
            if stdin_read:
                continue
            stdin_read = True
        name = "<stdin>" if source == "-" else source
        try:
            with _open(source, stdin) as stream:
                yield from _stream_items(name, stream, input_format)
        except OSError as exc:
            raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc


def _open(source: str, stdin: BinaryIO | None) -> AbstractContextManager[BinaryIO]:
    if source != "-":
        return open(source, "rb")
    # Stdin belongs to the caller: read it, never close it.
    return nullcontext(sys.stdin.buffer if stdin is None else stdin)


def _stream_items(source: str, stream: BinaryIO, input_format: str) -> Iterator[int | InvalidLine]:
    first = stream.read(_CHUNK_BYTES).removeprefix(_BOM)
    if input_format == "json" or (
        input_format == "auto" and first.lstrip(_JSON_SPACE)[:1] in (b"[", b"{")
    ):
        yield from _json_items(source, _read_json(source, first, stream))
    else:
        chunks = chain((first,), iter(lambda: stream.read(_CHUNK_BYTES), b""))
        yield from _text_items(source, chunks)


# --- text -----------------------------------------------------------------------------------


def _text_items(source: str, chunks: Iterable[bytes]) -> Iterator[int | InvalidLine]:
    for number, (line, too_long) in enumerate(_lines(chunks), start=1):
        outcome = _check_line(line, too_long)
        if isinstance(outcome, int):
            yield outcome
        elif outcome is not None:
            yield InvalidLine(
                source, number, preview(line.decode(errors="surrogateescape")), outcome
            )


def _lines(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Yield each line without its `\\n` (or `\\r\\n`), and whether it exceeds MAX_LINE_BYTES.

    An overlong line is yielded cut to MAX_LINE_BYTES + 1 bytes; the rest is never stored.
    """
    head, too_long = b"", False
    for chunk in chunks:
        *complete, rest = chunk.split(b"\n")
        for tail in complete:
            line = head if too_long else (head + tail).removesuffix(b"\r")
            yield line[: MAX_LINE_BYTES + 1], too_long or len(line) > MAX_LINE_BYTES
            head, too_long = b"", False
        if not too_long:
            head += rest
            # One byte of slack: the "\r" of a "\r\n" may end a chunk.
            if len(head) > MAX_LINE_BYTES + 1:
                head, too_long = head[: MAX_LINE_BYTES + 1], True
    if head or too_long:
        # No newline follows, so a final "\r" is a lone CR, not half of a CRLF.
        yield head, too_long or len(head) > MAX_LINE_BYTES


def _check_line(line: bytes, too_long: bool) -> int | str | None:
    """Return the id on a text line, why it is invalid, or None for a blank or comment line."""
    # Checked before comments: text after a lone CR may be ids that a comment would swallow.
    if b"\r" in line:
        return "lone CR line ending"
    if too_long:
        return f"line longer than {MAX_LINE_BYTES} bytes"
    content = line.strip(b" \t")
    if not content or content.startswith(b"#"):
        return None
    try:
        return parse_digits(content.decode())
    except UnicodeDecodeError:
        return "invalid UTF-8"
    except ValueError as exc:
        return str(exc)


# --- JSON -----------------------------------------------------------------------------------


def _read_json(source: str, first: bytes, stream: BinaryIO) -> bytearray:
    document = bytearray(first)
    while len(document) <= MAX_JSON_BYTES and (chunk := stream.read(_CHUNK_BYTES)):
        document += chunk
    if len(document) > MAX_JSON_BYTES:
        raise InputError(
            f"{source}: JSON input larger than {MAX_JSON_BYTES // 2**20} MiB\n"
            "HINT: use --input-format text with one id per line; text is streamed"
        )
    return document


def _json_items(source: str, document: bytearray) -> Iterator[int | InvalidLine]:
    try:
        parsed = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise InputError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    for position, (element, outcome) in enumerate(_json_outcomes(source, parsed), start=1):
        if isinstance(outcome, int):
            yield outcome
        else:
            yield InvalidLine(source, position, preview(orjson.dumps(element).decode()), outcome)


def _json_outcomes(source: str, document: object) -> Iterator[tuple[object, int | str]]:
    """Yield each element of the id list with its id or why it is not one."""
    if isinstance(document, list):
        for element in document:
            yield element, _check_json_id(element)
        return
    data = document.get("data") if isinstance(document, dict) else None
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InputError(f"{source}: expected an array of ids or an object with data[].id")
    for entry in entries:
        if isinstance(entry, dict) and "id" in entry:
            yield entry["id"], _check_json_id(entry["id"])
        else:
            yield entry, 'not an object with an "id"'


def _check_json_id(value: object) -> int | str:
    if isinstance(value, str):
        try:
            return parse_digits(value)
        except ValueError as exc:
            return str(exc)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            return "negative number"
        if value == 0:
            return "zero is not a job id"
        return value if value <= MAX_ID else OUT_OF_RANGE
    if isinstance(value, float):
        # orjson turns integers beyond 64 bits into floats, so a huge float was most likely one.
        return OUT_OF_RANGE if abs(value) > MAX_ID else "not an integer (float)"
    return f"not an id ({_JSON_TYPE_NAMES.get(type(value), type(value).__name__)})"
