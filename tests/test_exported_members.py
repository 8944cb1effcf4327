"""The public API: what `async_poller` exports is exactly `__all__`, sorted, and it holds
every name the documentation imports (the model: httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import async_poller

ROOT = Path(__file__).resolve().parent.parent
INCLUDED_PRIVATE_MEMBERS = {"__version__"}


def public_members() -> list[str]:
    """What the package itself defines or imports for its users: no submodule, no
    underscored helper."""
    return [
        name
        for name, value in vars(async_poller).items()
        if (not name.startswith("_") or name in INCLUDED_PRIVATE_MEMBERS)
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations`
    ]


def test_all_is_sorted_and_complete() -> None:
    """`__all__` is sorted and names every public member, the lazily loaded ones too."""
    expected = sorted({*public_members(), *async_poller._LAZY})
    assert expected == async_poller.__all__


def test_every_exported_name_resolves() -> None:
    """Each name in `__all__` is an attribute, the lazy ones included."""
    for name in async_poller.__all__:
        assert getattr(async_poller, name) is not None, name


def test_dir_lists_lazy_names() -> None:
    """`dir(async_poller)` shows `poll_jobs` before it is first used, for completion."""
    assert set(async_poller.__all__) <= set(dir(async_poller))


def test_the_old_base_name_warns() -> None:
    """`PollerError` still works for a while, with a DeprecationWarning naming the new one."""
    with pytest.warns(DeprecationWarning, match="AsyncPollerError"):
        old = async_poller.PollerError
    assert old is async_poller.AsyncPollerError


def documented_imports() -> dict[str, set[str]]:
    """Names that README.md, docs/ and examples/ import from `async_poller`, by file."""
    found: dict[str, set[str]] = {}
    pattern = re.compile(r"from async_poller import \(?([A-Za-z_, \n]+?)\)?\s*(?:$|\n\n|#)", re.M)
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*")]
    for path in files:
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            names = {name.strip() for name in match.group(1).replace("\n", ",").split(",")}
            found.setdefault(path.name, set()).update(name for name in names if name)
    return found


def test_documented_names_are_exported() -> None:
    """Whatever the docs tell a user to import from `async_poller` is in `__all__`."""
    documented = documented_imports()
    assert documented, "no `from async_poller import` found in README, docs or examples"
    for where, names in documented.items():
        assert names <= set(async_poller.__all__), f"{where}: {names - set(async_poller.__all__)}"


def test_import_does_not_load_aiohttp_or_asyncio() -> None:
    """`import async_poller` stays light (it starts every `--version` and `--help`);
    `poll_jobs` loads the HTTP stack when first used."""
    code = (
        "import sys, async_poller; heavy = {'aiohttp', 'asyncio', 'importlib.metadata'}; "
        "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
        "async_poller.poll_jobs; assert 'aiohttp' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_library_user_who_never_configures_logging_gets_no_output() -> None:
    """A run that logs (an aborted run logs an error) writes nothing to stdout or stderr
    when the program never configured logging: stdout is the program's own."""
    code = """
import asyncio
from async_poller import Config, Credentials, Secret, poll_jobs
from async_poller.simulator import Simulator, SimulatorConfig

async def main():
    async with Simulator(SimulatorConfig()) as sim:
        config = Config(
            base_url=sim.base_url,
            credentials=Credentials(refresh_token=Secret("not-the-right-token")),
        )
        events = [event async for event in poll_jobs([1, 2], config)]
    assert events[-1].exit_code == 4, events[-1]

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (0, "", "") == (done.returncode, done.stdout, done.stderr)
