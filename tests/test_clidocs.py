"""docs/cli.md: generated from --help, and a test fails when it is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_poller.cli.app import build_parser, subcommands
from tools.clidocs import REFERENCE, main, render_reference


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md holds exactly what `make docs` would write (run it if this fails)."""
    assert render_reference() == REFERENCE.read_text(encoding="utf-8"), "run 'make docs'"


def test_reference_has_every_command_and_flag() -> None:
    """Each command gets a section, and each of its flags appears in it."""
    reference = render_reference()
    for name, parser in subcommands(build_parser()).items():
        section = reference.split(f"## `async-poller {name}`")[1].split("## ")[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in section, f"{name} {flag}"


def test_check_fails_on_a_stale_page_and_docs_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 on a stale copy and leaves it alone; without --check it is rewritten."""
    page = tmp_path / "cli.md"
    stale = "# stale\n"
    page.write_text(stale, encoding="utf-8")
    assert 1 == main(["--check", "--out", str(page)])
    assert "make docs" in capsys.readouterr().err
    assert stale == page.read_text(encoding="utf-8")
    assert 0 == main(["--out", str(page)])
    assert 0 == main(["--check", "--out", str(page)])
    assert render_reference() == page.read_text(encoding="utf-8")
