"""The package's layers, and the one direction its imports point (docs/design.md, Layout).

cli/ -> _engine/ -> _lucidity/ and _state/ -> _pacing/ -> the vocabulary (the top-level
modules). A layer imports only the layers below it and its own package. The simulator is a
program of its own beside the library: it uses the vocabulary, and only the command line
starts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "async_poller"

LAYER = {
    "cli": 4,
    "_engine": 3,
    "_lucidity": 2,
    "_state": 2,
    "simulator": 2,
    "_pacing": 1,
}
"""The rank of each subpackage; the top-level modules (the vocabulary) rank 0."""

LIBRARIES_OF = {"rich": {"cli"}, "prometheus_client": {"_engine"}, "redis": {"_pacing"}}
"""Third-party imports kept to the layer that needs them."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def owner(module: str) -> str:
    """The subpackage an internal dotted name belongs to, or "" for the top-level modules."""
    head, _, rest = module.partition(".")
    return head if rest or head in LAYER else ""


def imports(path: Path) -> list[tuple[str, int]]:
    """What `path` imports, with the line: internal modules as dotted names without the
    package prefix, others (the standard library, third parties) as their top name."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ["async_poller", *package[: len(package) - node.level + 1]]
            if node.module:
                found.append((".".join([*base, node.module]), node.lineno))
            else:
                found += [(".".join([*base, alias.name]), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    internal = []
    for module, line in found:
        if module.startswith("async_poller."):
            internal.append((module.removeprefix("async_poller."), line))
        elif module.split(".")[0] != "async_poller":
            internal.append(("!" + module.split(".")[0], line))
    return internal


def violations(path: Path) -> list[str]:
    """Each import of `path` that points sideways or up, as "file:line imports module"."""
    name = "/".join(path.relative_to(PACKAGE).with_suffix("").parts)
    if name in {"__init__", "__main__"}:
        return []  # the public facade and `python -m` may reach any layer
    here = owner(name.replace("/", "."))
    wrong = []
    for module, line in imports(path):
        if module.startswith("!"):
            allowed = LIBRARIES_OF.get(module[1:])
            if allowed is not None and here not in allowed:
                wrong.append(f"{name}.py:{line} imports {module[1:]}")
            continue
        there = owner(module)
        upward = there != here and LAYER.get(there, 0) >= LAYER.get(here, 0)
        if upward or (there == "simulator" and here not in {"cli", "simulator"}):
            wrong.append(f"{name}.py:{line} imports {module}")
    return wrong


@pytest.mark.parametrize(
    "path", modules(), ids=lambda path: str(path.relative_to(PACKAGE).with_suffix(""))
)
def test_imports_point_down(path: Path) -> None:
    """No module imports from its own layer's peers or from a layer above it."""
    assert [] == violations(path)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The check itself bites: an engine module importing the command line is caught."""
    engine = PACKAGE / "_engine"
    bad = engine / "_layer_probe.py"
    bad.write_text("from ..cli.output import open_output\nfrom .._state.store import StateStore\n")
    try:
        assert ["_engine/_layer_probe.py:1 imports cli.output"] == violations(bad)
    finally:
        bad.unlink()


def test_every_subpackage_has_a_rank() -> None:
    """A new subpackage must be placed in the order before it can be used."""
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert set(LAYER) == subpackages
