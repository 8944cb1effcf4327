"""Reading and validating job ids: the text grammar, JSON shapes, sources, previews, streaming."""

from __future__ import annotations

import errno
import io
import re
import sys
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_poller import ids as ids_module
from async_poller.errors import InputError
from async_poller.ids import (
    MAX_ID,
    MAX_LINE_BYTES,
    InvalidLine,
    JobIds,
    format_invalid,
    parse_id,
    read_ids,
)

BOM = b"\xef\xbb\xbf"
OUT_OF_RANGE = "out of range (max 9223372036854775807)"


def read_stdin(data: bytes, input_format: str = "auto") -> JobIds:
    """Read `data` as the only source, given as `-`."""
    assert input_format in ("auto", "text", "json")
    return read_ids(["-"], input_format=input_format, stdin=io.BytesIO(data))  # type: ignore[arg-type]


def reasons(result: JobIds) -> list[tuple[int, str]]:
    return [(invalid.line, invalid.reason) for invalid in result.invalid]


class EndlessOnes(io.RawIOBase):
    """A raw stream of `size` bytes of b"1" with no newline, then `tail`; it records each read."""

    def __init__(self, size: int, tail: bytes) -> None:
        self.remaining = size
        self.tail = tail
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.largest_read = max(self.largest_read, len(buffer))
        if self.remaining:
            count = min(len(buffer), self.remaining)
            buffer[:count] = b"1" * count
            self.remaining -= count
            return count
        count = min(len(buffer), len(self.tail))
        buffer[:count], self.tail = self.tail[:count], self.tail[count:]
        return count


class FailingStream(io.RawIOBase):
    """A raw stream whose every read fails like a broken disk."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        raise OSError(errno.EIO, "Input/output error")


# --- the grammar of one id -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("1", 1),
        ("0042", 42),
        ("0" * 100 + "7", 7),
        (" \t 42\t ", 42),
        ("9223372036854775807", MAX_ID),
        ("09223372036854775807", MAX_ID),
    ],
)
def test_parse_id_accepts_ascii_digits_in_range(text: str, expected: int) -> None:
    """ASCII digits with optional leading zeros and surrounding spaces/tabs give their value."""
    assert expected == parse_id(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" \t ", "empty"),
        ("0", "zero is not a job id"),
        ("000", "zero is not a job id"),
        ("9223372036854775808", OUT_OF_RANGE),
        ("1" * 5000, OUT_OF_RANGE),
        ("-5", "sign not allowed"),
        ("+5", "sign not allowed"),
        ("1.5", "not an integer (decimal point)"),
        ("42.", "not an integer (decimal point)"),
        ("1e5", "not an integer (exponent)"),
        ("1E+5", "not an integer (exponent)"),
        ("0x1F", "hexadecimal not allowed"),
        ("1_000", "separator '_' inside id"),
        ("1,000", "separator ',' inside id"),
        ("1 000", "separator ' ' inside id"),
        ("1\t000", "separator '\\t' inside id"),
        ("42 # note", "trailing comment not allowed"),
        ("42#note", "trailing comment not allowed"),
        ("42abc", "inline text after id"),
        ("42 abc", "inline text after id"),
        ("abc", "not a number"),
        ("#5", "not a number"),
        ("\u0663", "non-ASCII digit U+0663"),
        ("4\uff12", "non-ASCII digit U+FF12"),
        ("\u00a042", "non-ASCII space U+00A0"),
        ("42\u2003", "non-ASCII space U+2003"),
        ("\ufeff42", "byte order mark not at start of input"),
        ("42\u00e9", "inline text after id"),
        ("\u00e9", "non-ASCII character U+00E9"),
        ("4\x002", "control character U+0000"),
        ("42\x7f", "control character U+007F"),
        ("42\x85", "control character U+0085"),
        ("42\udcff", "invalid UTF-8"),
    ],
)
def test_parse_id_names_the_reason_a_text_is_not_an_id(text: str, reason: str) -> None:
    """Every kind of near-miss is refused with a short reason naming what is wrong."""
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_id(text)


# --- text input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected_ids", "expected_invalid"),
    [
        (b"1\n2\n3\n", [1, 2, 3], []),
        (b"1\n2", [1, 2], []),
        (b"1\r\n2\r\n", [1, 2], []),
        (b"  1 \t\n\t2\n", [1, 2], []),
        (b"\n\n  \t \n1\n\n", [1], []),
        (b"# header\n1\n  # indented \xff\x00 comment\n2\n", [1, 2], []),
        (BOM + b"1\n2\n", [1, 2], []),
        (BOM + b"# comment\n1\n", [1], []),
        (b"1\n" + BOM + b"2\n", [1], [(2, "byte order mark not at start of input")]),
        (b" " + BOM + b"1\n", [], [(1, "byte order mark not at start of input")]),
        (b"1\r2\r3\r", [], [(1, "lone CR line ending")]),
        (b"1\n2\r\n3\r4\n5\n", [1, 2, 5], [(3, "lone CR line ending")]),
        (b"1\r\r\n", [], [(1, "lone CR line ending")]),
        (b"7\r", [], [(1, "lone CR line ending")]),
        (b"# comment\rwith CR\n1\n", [1], [(1, "lone CR line ending")]),
        (b"1\n\xff\xfe\n", [1], [(2, "invalid UTF-8")]),
        (b"\xd9\xa3\n", [], [(1, "non-ASCII digit U+0663")]),
        (b"42\xc2\xa0\n", [], [(1, "non-ASCII space U+00A0")]),
        (b"4\x002\n", [], [(1, "control character U+0000")]),
        (b"42 # why\n", [], [(1, "trailing comment not allowed")]),
        (b"0\n-1\n", [], [(1, "zero is not a job id"), (2, "sign not allowed")]),
    ],
)
def test_text_lines_follow_the_grammar(
    data: bytes, expected_ids: list[int], expected_invalid: list[tuple[int, str]]
) -> None:
    """Each text line is an id, skipped (blank, comment), or invalid with its line number."""
    result = read_stdin(data)
    assert (expected_ids, expected_invalid) == (result.ids, reasons(result))


def test_lines_up_to_the_limit_are_accepted_and_longer_ones_rejected() -> None:
    """A line of exactly MAX_LINE_BYTES (CRLF not counted) is read; one byte more is invalid."""
    at_limit = b"0" * (MAX_LINE_BYTES - 1) + b"1"
    result = read_stdin(at_limit + b"\r\n" + b" " + at_limit + b"\n" + at_limit + b"2")
    expected = ([1], [(2, "line longer than 4096 bytes"), (3, "line longer than 4096 bytes")])
    assert expected == (result.ids, reasons(result))


def test_overlong_comment_lines_are_invalid_too() -> None:
    """Length is checked before comments, so a 5000-byte comment is reported, not skipped."""
    result = read_stdin(b"#" + b"x" * 5000 + b"\n1\n")
    expected = ([1], [(1, "line longer than 4096 bytes")])
    assert expected == (result.ids, reasons(result))


def test_a_gigantic_line_streams_through_in_bounded_memory() -> None:
    """64 MiB without a newline (as good as 1 GB) is rejected, held at most one chunk at a time."""
    raw = EndlessOnes(64 * 2**20, tail=b"\n42\n")
    tracemalloc.start()
    try:
        result = read_ids(["-"], stdin=io.BufferedReader(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = ([42], [(1, "1" * 40 + "…", "line longer than 4096 bytes")])
    assert expected == (result.ids, [(i.line, i.preview, i.reason) for i in result.invalid])
    assert peak < 2**20
    assert raw.largest_read <= 2**20


def test_ids_are_read_in_first_occurrence_order_with_duplicates_counted() -> None:
    """A repeated id is kept once, where it first appeared, and counted as a duplicate."""
    result = read_stdin(b"3\n1\n3\n2\n1\n003\n")
    assert JobIds([3, 1, 2], [], 3) == result


# --- sources ---------------------------------------------------------------------------------


def test_command_line_ids_come_first_then_sources_in_order(tmp_path: Path) -> None:
    """`--id` values are read before the sources, and duplicates count across all of them."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"10\n20\n")
    second.write_bytes(b"20\n30\nx\n")
    result = read_ids(
        [str(first), "-", str(second)], ids=["5", "10", "-1"], stdin=io.BytesIO(b"40\n5\n")
    )
    expected_invalid = [
        InvalidLine("--id", 3, "-1", "sign not allowed"),
        InvalidLine(str(second), 3, "x", "not a number"),
    ]
    assert JobIds([5, 10, 20, 40, 30], expected_invalid, 3) == result


def test_stdin_is_read_once_however_often_dash_is_given() -> None:
    """A second `-` adds nothing: stdin cannot be read twice."""
    assert JobIds([1, 2], [], 0) == read_ids(["-", "-"], stdin=io.BytesIO(b"1\n2\n"))


def test_stdin_is_left_open_for_the_caller() -> None:
    """Reading `-` does not close the stream it was given."""
    stdin = io.BytesIO(b"1\n")
    read_ids(["-"], stdin=stdin)
    assert not stdin.closed


def test_dash_reads_the_process_stdin_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a `stdin` argument, `-` reads `sys.stdin.buffer`."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"7\n")))
    assert JobIds([7], [], 0) == read_ids(["-"])


def test_no_sources_and_no_ids_read_nothing() -> None:
    """Stdin is only read when asked for; an empty result is the caller's to judge."""
    assert JobIds([], [], 0) == read_ids(stdin=io.BytesIO(b"1\n"))


def test_each_source_may_start_with_its_own_bom(tmp_path: Path) -> None:
    """A BOM is accepted at the start of every source, not only the first."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(BOM + b"1\n")
    second.write_bytes(BOM + b"2\n")
    assert JobIds([1, 2], [], 0) == read_ids([str(first), str(second)])


@pytest.mark.parametrize(
    ("name", "error"), [("missing.txt", "No such file or directory"), ("", "Is a directory")]
)
def test_unreadable_sources_are_input_errors_naming_the_path(
    tmp_path: Path, name: str, error: str
) -> None:
    """A missing file or a directory gives one clear line naming the path."""
    path = str(tmp_path / name)
    with pytest.raises(InputError) as caught:
        read_ids(["-", path], stdin=io.BytesIO(b"1\n"))
    assert f"{path}: cannot read: {error}" == str(caught.value)


def test_a_read_failure_midway_is_an_input_error() -> None:
    """An I/O error while reading becomes an InputError naming the source."""
    with pytest.raises(InputError) as caught:
        read_ids(["-"], stdin=io.BufferedReader(FailingStream()))
    expected = "<stdin>: cannot read: Input/output error"
    assert expected == str(caught.value)


def test_describe_renders_one_line_for_stderr(tmp_path: Path) -> None:
    """`format_invalid` gives source, line, escaped preview and reason on one line."""
    path = tmp_path / "ids.txt"
    path.write_bytes(b"1\n2\nabc\x00\n")
    result = read_ids([str(path)])
    assert [f"{path}:3: 'abc\\x00' (control character U+0000)"] == [
        format_invalid(invalid) for invalid in result.invalid
    ]


# --- previews --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "preview"),
    [
        (b"abc\x00", "abc\\x00"),
        (b"a\\b'\"", "a\\\\b'\""),
        (b"\tx\x1b", "\\tx\\x1b"),
        (b"\xff\xfex", "\\xff\\xfex"),
        ("\u00e9\u0663\U0001f600".encode(), "\\xe9\\u0663\\U0001f600"),
        (b"x" * 40, "x" * 40),
        (b"x" * 41, "x" * 40 + "…"),
        (b"x" * 38 + b"\x00", "x" * 38 + "…"),
    ],
)
def test_previews_are_escaped_like_repr_and_cut_at_40_characters(line: bytes, preview: str) -> None:
    """Control, non-ASCII and undecodable bytes are escaped; escapes are never cut in half."""
    assert preview == read_stdin(b"#\n" + line + b"\n", "text").invalid[0].preview


# --- JSON input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[1, 2, 2, 3]", JobIds([1, 2, 3], [], 1)),
        (b'["0042", 42]', JobIds([42], [], 1)),
        (b"[]", JobIds([], [], 0)),
        (b'{"success": true, "data": [{"id": 4711, "x": 1}, {"id": 4712}], "requestId": "r"}',
         JobIds([4711, 4712], [], 0)),
        (b'{"data": {"id": 9}}', JobIds([9], [], 0)),
        (BOM + b"\r\n\t [7]", JobIds([7], [], 0)),
        (b"  \n{\"data\": []}", JobIds([], [], 0)),
    ],
)  # fmt: skip
def test_json_arrays_and_saved_install_responses_are_read(data: bytes, expected: JobIds) -> None:
    """An array of ids or an object with data[].id (or data.id) is detected and read."""
    assert expected == read_stdin(data)


@pytest.mark.parametrize(
    ("element", "preview", "reason"),
    [
        ("0", "0", "zero is not a job id"),
        ("-5", "-5", "negative number"),
        ("9223372036854775808", "9223372036854775808", OUT_OF_RANGE),
        ("184467440737095516160", "1.844674407370955e+20", OUT_OF_RANGE),
        ("4711.0", "4711.0", "not an integer (float)"),
        ("true", "true", "not an id (boolean)"),
        ("null", "null", "not an id (null)"),
        ("[1]", "[1]", "not an id (array)"),
        ('{"a":1}', '{"a":1}', "not an id (object)"),
        ('" 42"', '" 42"', "space before id"),
        ('"42 "', '"42 "', "space after id"),
        ('""', '""', "empty"),
        ('"4.5"', '"4.5"', "not an integer (decimal point)"),
        ('"\\u0663"', '"\\u0663"', "non-ASCII digit U+0663"),
        ('"a\\u0000"', '"a\\\\u0000"', "control character U+0000"),
    ],
)
def test_invalid_json_elements_are_reported_by_position(
    element: str, preview: str, reason: str
) -> None:
    """A bad element is an InvalidLine at its 1-based position, previewed as JSON."""
    result = read_stdin(f"[1, {element}, 2]".encode())
    assert JobIds([1, 2], [InvalidLine("<stdin>", 2, preview, reason)], 0) == result


def test_install_response_entries_without_an_id_are_invalid() -> None:
    """In data[], an entry that is not an object with "id" is reported at its position."""
    result = read_stdin(b'{"data": [{"id": 1}, {"name": "x"}, 5, {"id": "2"}]}')
    expected = [(2, 'not an object with an "id"'), (3, 'not an object with an "id"')]
    assert ([1, 2], expected) == (result.ids, reasons(result))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1,\n 2,,]", "<stdin>: not valid JSON (line 2, column 4: "),
        (b"", "<stdin>: not valid JSON (line 1, column 1: "),
        (b"1\n2\n", "<stdin>: not valid JSON (line 2, column 1: "),
        (b"42", "<stdin>: expected an array of ids or an object with data[].id"),
        (b'{"ids": [1]}', "<stdin>: expected an array of ids or an object with data[].id"),
        (b'{"success": false, "data": null}', "<stdin>: expected an array of ids or an object"),
    ],
)
def test_malformed_or_misshapen_json_is_an_input_error(data: bytes, message: str) -> None:
    """JSON that does not parse, or holds no id list, stops the run with a clear message."""
    with pytest.raises(InputError) as caught:
        read_stdin(data, "json")
    assert str(caught.value).startswith(message)


def test_json_larger_than_the_cap_is_refused_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON is parsed whole, so input beyond MAX_JSON_BYTES is refused and text suggested."""
    monkeypatch.setattr(ids_module, "MAX_JSON_BYTES", 100)
    with pytest.raises(InputError, match="larger than 0 MiB\nHINT: use --input-format text"):
        read_stdin(b"[" + b"1, " * 50 + b"1]")


@pytest.mark.parametrize(
    ("data", "input_format", "expected"),
    [
        (b"[1]", "text", JobIds([], [InvalidLine("<stdin>", 1, "[1]", "not a number")], 0)),
        (b" " + BOM + b"[1]", "auto", JobIds([], [InvalidLine("<stdin>", 1, " \\ufeff[1]",
                                                "byte order mark not at start of input")], 0)),
        (b"1", "auto", JobIds([1], [], 0)),
        (b"\n\n[1]", "auto", JobIds([1], [], 0)),
    ],
)  # fmt: skip
def test_the_format_is_detected_from_the_first_non_blank_byte(
    data: bytes, input_format: str, expected: JobIds
) -> None:
    """Auto means JSON when `[` or `{` comes first after a BOM; `text` never parses JSON."""
    assert expected == read_stdin(data, input_format)


# --- properties ------------------------------------------------------------------------------

padding = st.text(alphabet=" \t", max_size=3)


@given(
    st.integers(1, MAX_ID),
    st.integers(0, 5),
    padding,
    padding,
    st.sampled_from(["\n", "\r\n", ""]),
)
def test_any_valid_id_rendered_loosely_reads_back_as_itself(
    value: int, zeros: int, before: str, after: str, ending: str
) -> None:
    """Leading zeros, surrounding spaces/tabs and any line ending never change the id."""
    line = f"{before}{'0' * zeros}{value}{after}"
    assert (value, JobIds([value], [], 0)) == (
        parse_id(line),
        read_stdin(f"{line}{ending}".encode()),
    )


# Fragments that hit the grammar's edges more often than uniform bytes would.
fragments = st.one_of(
    st.binary(max_size=4),
    st.sampled_from(
        [b"1", b"42", b"0", b" ", b"\t", b"\n", b"\r", b"\r\n", b"#", b"-", b".", BOM, b"\xff",
         b"\xd9\xa3", b"\xc2\xa0", b"\x00", b"9223372036854775807", b"9223372036854775808",
         b"7" * (MAX_LINE_BYTES - 1)]
    ),
)  # fmt: skip
text_inputs = st.lists(fragments, max_size=30).map(b"".join)
ID_LINE = re.compile(rb"[ \t]*([0-9]+)[ \t]*")


def expected_lines(data: bytes) -> tuple[list[int], list[int]]:
    """Read the grammar directly: the valid ids in order, and the invalid line numbers."""
    data = data.removeprefix(BOM)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    valid, invalid = [], []
    for number, raw in enumerate(lines, start=1):
        ended_by_newline = number < len(lines) or data.endswith(b"\n")
        line = raw.removesuffix(b"\r") if ended_by_newline else raw
        match = ID_LINE.fullmatch(line)
        if b"\r" in line or len(line) > MAX_LINE_BYTES:
            invalid.append(number)
        elif match and 1 <= int(match[1]) <= MAX_ID:
            valid.append(int(match[1]))
        elif line.strip(b" \t")[:1] not in (b"", b"#"):
            invalid.append(number)
    return valid, invalid


@given(text_inputs)
def test_arbitrary_bytes_split_into_ids_and_invalid_lines_as_the_grammar_says(data: bytes) -> None:
    """Any bytes read without error; each line is an id, skipped, or an InvalidLine."""
    valid, invalid_numbers = expected_lines(data)
    result = read_stdin(data, "text")
    distinct = list(dict.fromkeys(valid))
    assert (distinct, invalid_numbers, len(valid) - len(distinct)) == (
        result.ids,
        [invalid.line for invalid in result.invalid],
        result.duplicates,
    )


@given(text_inputs, st.integers(3, 50))
def test_chunk_boundaries_do_not_change_the_result(data: bytes, chunk_bytes: int) -> None:
    """Reading in tiny chunks gives the same result as reading in one piece."""
    whole = read_stdin(data, "text")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ids_module, "_CHUNK_BYTES", chunk_bytes)
        assert whole == read_stdin(data, "text")


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_previews_are_printable_ascii_and_bounded(text: str) -> None:
    """Whatever the input, a preview is printable ASCII of at most 40 characters plus `…`."""
    line = b"x" + text.encode("utf-8", "surrogateescape")
    result = read_ids(["-"], ids=[text + "x"], stdin=io.BytesIO(line), input_format="text")
    for invalid in result.invalid:
        body = invalid.preview.removesuffix("…")
        assert body.isascii()
        assert body.isprintable()
        assert len(invalid.preview) <= 41


@given(st.lists(st.one_of(st.integers(-5, 20), st.integers(1, MAX_ID).map(str)), max_size=20))
def test_json_lists_read_like_their_valid_elements(elements: list[int | str]) -> None:
    """A JSON array yields its valid ids deduplicated; every other element is an InvalidLine."""
    values = [int(element) for element in elements]
    valid = [value for value in values if value >= 1]
    invalid_positions = [position for position, value in enumerate(values, 1) if value < 1]
    result = read_stdin(orjson.dumps(elements))
    distinct = list(dict.fromkeys(valid))
    assert (distinct, invalid_positions, len(valid) - len(distinct)) == (
        result.ids,
        [invalid.line for invalid in result.invalid],
        result.duplicates,
    )
