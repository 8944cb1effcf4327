"""Help and version: every command and flag documented, with examples; both start fast."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from importlib.metadata import version

import pytest

from async_poller.cli.app import PROG, build_parser, main, subcommands

PARSER = build_parser()
COMMANDS = subcommands(PARSER)
EVERY_PARSER = {PROG: PARSER} | {f"{PROG} {name}": parser for name, parser in COMMANDS.items()}
HEAVY_MODULES = ("aiohttp", "rich", "asyncio", "importlib.metadata")
"""What `--help` and `--version` must not import: the HTTP stack, the progress display, the
event loop and the package metadata (each costs them tens of milliseconds)."""


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's own flags and arguments, without -h and the command list."""
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]


def examples(parser: argparse.ArgumentParser) -> list[str]:
    """The example command lines of a parser's epilog."""
    epilog = parser.epilog or ""
    assert "examples:" in epilog
    return [line.strip() for line in epilog.splitlines() if re.search(r"\basync-poller ", line)]


def test_the_expected_commands_exist() -> None:
    """The commands of the contract are all there, and no other."""
    assert {"poll", "report", "simulate", "demo"} == set(COMMANDS)


@pytest.mark.parametrize("name", list(EVERY_PARSER))
def test_every_command_has_a_description_and_examples(name: str) -> None:
    """Each command says what it does and shows two or more real command lines."""
    parser = EVERY_PARSER[name]
    assert len(parser.description or "") > 40
    assert len(examples(parser)) >= 2


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_listed_with_a_summary(name: str) -> None:
    """`async-poller --help` lists each command with a one-line summary."""
    assert re.search(rf"^\s+{name}\s+\w.+$", PARSER.format_help(), re.MULTILINE)


@pytest.mark.parametrize("name", list(EVERY_PARSER))
def test_every_flag_has_help_and_shows_its_default(name: str) -> None:
    """Each flag explains itself; where it has a default, the help tells it."""
    for action in options(EVERY_PARSER[name]):
        flag = "/".join(action.option_strings) or action.dest
        assert action.help not in (None, "", argparse.SUPPRESS), f"{name} {flag}: no help"
        assert action.help is not None
        has_default = action.default not in (None, False, [], argparse.SUPPRESS)
        if has_default and not isinstance(action, argparse._VersionAction):
            assert "default" in action.help, f"{name} {flag}: the default is not shown"


def test_poll_examples_cover_a_file_jq_on_stdin_and_cron() -> None:
    """poll's examples show the three ways people run it: a file, jq into stdin, cron."""
    lines = examples(COMMANDS["poll"])
    assert any(re.search(r"async-poller poll \S*ids\.txt", line) for line in lines)
    assert any(line.startswith("jq ") and "| async-poller poll -" in line for line in lines)
    assert any(re.match(r"(\S+ ){5}async-poller poll --state", line) for line in lines)


def test_contract_flags_of_poll() -> None:
    """poll keeps the flags docs/design.md promises, including the output ones."""
    flags = {flag for action in options(COMMANDS["poll"]) for flag in action.option_strings}
    promised = {
        "--base-url", "--refresh-token-file", "--token-command", "--id", "--input-format",
        "--skip-invalid", "--concurrency", "--rate", "--min-delay", "--max-delay",
        "--deadline", "--request-timeout", "--once", "--state", "--output", "--metrics-file",
        "--log-format", "--log-level", "-q", "--progress", "--heartbeat",
    }  # fmt: skip
    assert promised <= flags


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in COMMANDS)])
def test_help_exits_0_on_stdout(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage to stdout and exits 0, for the program and each command."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert 0 == exit_.value.code
    assert capsys.readouterr().out.startswith("usage: async-poller")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert 0 == exit_.value.code
    assert f"async-poller {version('async-poller')}\n" == capsys.readouterr().out


def imported_modules(*argv: str) -> tuple[set[str], float]:
    """The top-level packages `python -X importtime -m async_poller ARGV` imports, and how
    long the process took (reported, never asserted)."""
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "async_poller", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    took = time.perf_counter() - started
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", process.stderr, re.MULTILINE)
    return {name.split(".")[0] for name in names}, took


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["poll", "--help"]])
def test_help_and_version_do_not_import_aiohttp(argv: list[str]) -> None:
    """--help and --version start fast: neither aiohttp nor rich is imported."""
    modules, took = imported_modules(*argv)
    assert "async_poller" in modules, "the probe must see our own imports"
    assert not modules & set(HEAVY_MODULES), f"{' '.join(argv)} imported them ({took:.2f}s)"


def test_a_bug_exits_70_with_a_scrubbed_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is reported as an internal error (exit 70), never as exit 1,
    and known secrets are masked in the traceback."""
    from async_poller.cli import demo_run as demo
    from async_poller.redact import Secret

    Secret("leaky-token-0123456789")

    async def broken(**_: object) -> int:
        raise RuntimeError("boom near leaky-token-0123456789")

    monkeypatch.setattr(demo, "run_demo", broken)
    assert main(["demo", "--progress", "never"]) == 70
    err = capsys.readouterr().err
    assert "internal error" in err
    assert "RuntimeError: boom near ***" in err
    assert "leaky-token-0123456789" not in err
