"""The README's CLI reference, generated from the commands' own `--help` so it cannot drift.

    python -m async_poller.docs            # rewrite the reference in README.md (make docs)
    python -m async_poller.docs --check    # exit 1 when it is stale (make docs-check)

The reference is the region between two markers; the rest of the README is left alone.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, cast

from .cli import PROG, build_parser, subcommands

__all__ = ["END", "START", "main", "render_reference", "update_readme"]

START: Final = "<!-- cli-reference:start -->"
END: Final = "<!-- cli-reference:end -->"
WIDTH: Final = 100
"""Help is rendered at this width, whatever the terminal, so the output is reproducible."""
NOTE: Final = (
    "<!-- Generated from each command's --help by `make docs`; "
    "`make docs-check` and the tests fail when it is stale. Do not edit by hand. -->"
)


class StaleReference(Exception):
    """The README has no reference region to fill."""


def render_reference() -> str:
    """The region's content: every command's `--help`, in a fenced block under a heading."""
    parser = build_parser()
    sections = [NOTE]
    for name, command in [(PROG, parser), *subcommands(parser).items()]:
        sections.append(f"### `{name if command is parser else f'{PROG} {name}'}`")
        sections.append(f"```text\n{_help(command).rstrip()}\n```")
    return "\n\n".join(sections)


def update_readme(text: str) -> str:
    """`text` with the region between the markers replaced by the current reference."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise StaleReference(f"the README has no {START} ... {END} region")
    return f"{text[: start + len(START)]}\n{render_reference()}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the README's reference, or with `--check` only tell whether it is current."""
    parser = argparse.ArgumentParser(
        prog="python -m async_poller.docs",
        description="Write the CLI reference (every command's --help) into the README.",
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument(
        "--readme", type=Path, default=Path("README.md"), help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        updated = update_readme(text)
    except StaleReference as error:
        print(f"{args.readme}: {error}", file=sys.stderr)
        return 1
    if updated == text:
        return 0
    if args.check:
        print(
            f"{args.readme}: the CLI reference is out of date\nHINT: run 'make docs'",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(updated, encoding="utf-8")
    print(f"{args.readme}: CLI reference updated", file=sys.stderr)
    return 0


def _help(parser: argparse.ArgumentParser) -> str:
    # The parser is a fresh one from `build_parser`, so changing it here affects nothing else.
    formatter = cast(type[argparse.HelpFormatter], parser.formatter_class)
    parser.formatter_class = functools.partial(formatter, width=WIDTH)
    return parser.format_help()


if __name__ == "__main__":
    sys.exit(main())
