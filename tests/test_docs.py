"""The README's CLI reference: generated from --help, and a test fails when it is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_poller.cli import build_parser, subcommands
from async_poller.docs import END, START, main, render_reference, update_readme

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_cli_reference_is_up_to_date() -> None:
    """README.md holds exactly what `make docs` would write (run it if this fails)."""
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, "the CLI reference is stale: run 'make docs'"


def test_reference_has_every_command_and_flag() -> None:
    """Each command gets a section, and each of its flags appears in it."""
    reference = render_reference()
    for name, parser in subcommands(build_parser()).items():
        section = reference.split(f"### `async-poller {name}`")[1].split("### ")[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in section, f"{name} {flag}"


def test_only_the_marked_region_changes() -> None:
    """Text before and after the markers is kept byte for byte."""
    text = f"# Title\n\nprose\n\n{START}\nold stuff\n{END}\n\nmore prose\n"
    updated = update_readme(text)
    assert updated.startswith(f"# Title\n\nprose\n\n{START}\n")
    assert updated.endswith(f"{END}\n\nmore prose\n")
    assert "old stuff" not in updated
    assert update_readme(updated) == updated


def test_check_fails_on_a_stale_readme_and_docs_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 on a stale copy and leaves it alone; without --check it is rewritten."""
    readme = tmp_path / "README.md"
    stale = f"# x\n{START}\nstale\n{END}\n"
    readme.write_text(stale, encoding="utf-8")
    assert 1 == main(["--check", "--readme", str(readme)])
    assert "make docs" in capsys.readouterr().err
    assert stale == readme.read_text(encoding="utf-8")
    assert 0 == main(["--readme", str(readme)])
    assert 0 == main(["--check", "--readme", str(readme)])


def test_missing_markers_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A README without the markers is reported, not silently left unchanged."""
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    assert 1 == main(["--check", "--readme", str(readme)])
    assert START in capsys.readouterr().err
