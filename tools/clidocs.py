"""docs/cli.md, the CLI reference, generated from the commands' own `--help` so it cannot drift.

python -m tools.clidocs            # rewrite docs/cli.md (make docs)
python -m tools.clidocs --check    # exit 1 when it is stale (make docs-check)
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, cast

from async_poller.cli.app import PROG, build_parser, subcommands

__all__ = ["REFERENCE", "main", "render_reference"]

REFERENCE: Final = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WIDTH: Final = 100
"""Help is rendered at this width, whatever the terminal, so the output is reproducible."""
HEADER: Final = """\
# Command-line reference

<!-- Generated from each command's --help by `make docs`; `make docs-check` and the tests
fail when it is stale. Do not edit by hand. -->

Every command, with every flag and its examples, exactly as `--help` prints it.
"""


def render_reference() -> str:
    """The whole page: every command's `--help`, in a fenced block under a heading."""
    parser = build_parser()
    sections = [HEADER]
    for name, command in [(PROG, parser), *subcommands(parser).items()]:
        sections.append(f"## `{name if command is parser else f'{PROG} {name}'}`\n")
        sections.append(f"```text\n{_help(command).rstrip()}\n```\n")
    return "\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the reference, or with `--check` only tell whether it is current."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.clidocs",
        description="Write the CLI reference (every command's --help) to docs/cli.md.",
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=REFERENCE, help="default: docs/cli.md")
    args = parser.parse_args(argv)
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    wanted = render_reference()
    if current == wanted:
        return 0
    if args.check:
        print(
            f"{args.out}: the CLI reference is out of date\nHINT: run 'make docs'", file=sys.stderr
        )
        return 1
    args.out.write_text(wanted, encoding="utf-8")
    print(f"{args.out}: CLI reference updated", file=sys.stderr)
    return 0


def _help(parser: argparse.ArgumentParser) -> str:
    # The parser is a fresh one from `build_parser`, so changing it here affects nothing else.
    formatter = cast(type[argparse.HelpFormatter], parser.formatter_class)
    parser.formatter_class = functools.partial(formatter, width=WIDTH)
    return parser.format_help()


if __name__ == "__main__":
    sys.exit(main())
