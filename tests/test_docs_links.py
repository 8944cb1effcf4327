"""Links in the README and docs/ lead somewhere, and nothing cites files outside the repository.

Relative links must name a file or folder of the repository, and an `#anchor` a heading of
the page it points to (GitHub's anchors). The README is also shown on the package index,
without the repository around it, so its links are absolute: those to the repository's
`blob/main/...` and `tree/main/...` are checked like relative ones.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/async-poller/async-poller"
"""The repository's address: the one base of the README's links and the project's URLs."""
PAGES = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.md")])
README = ROOT / "README.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_REFERENCE = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])+)\]\[([^\]]*)\]")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)

_OUTSIDE = re.compile(r"(?<![\w-])(?:DESIGN|API|STYLE)\.md\b|/work/" r"shared|shared/" r"seed\b")
"""How a citation of the design notes that once lived outside the repository looks."""


@dataclass(frozen=True)
class Link:
    page: Path
    target: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}: {self.target}"


def prose(text: str) -> str:
    """`text` without code: fenced blocks and code spans hold examples, not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[Link]:
    """Every link target on `page`: inline, reference definitions, and autolinks."""
    text = prose(page.read_text(encoding="utf-8"))
    targets = _INLINE.findall(text) + [t for _, t in _DEFINITION.findall(text)]
    return [Link(page, target) for target in targets + _AUTOLINK.findall(text)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lowercased, without punctuation, with
    a hyphen for each space."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[`*]|(?<!\w)_|_(?!\w)", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors of `page`'s headings, with -1, -2, ... for repeated ones."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return frozenset(found)


def problem(link: Link) -> str | None:
    """What is wrong with `link`, or None when it resolves (or leads outside the repo)."""
    target = link.target
    if target.startswith(("mailto:", "http://", "https://")) and not target.startswith(
        REPOSITORY + "/"
    ):
        return None
    if target.startswith(REPOSITORY + "/"):
        match = re.fullmatch(r"(blob|tree)/main/([^#?]*)(#.*)?", target[len(REPOSITORY) + 1 :])
        if not match:
            return None  # issues, releases, ...: pages of the forge, not files
        kind, path, anchor = match.groups()
        resolved = ROOT / unquote(path)
        if kind == "blob" and not resolved.is_file():
            return "no such file in the repository"
        if kind == "tree" and not resolved.is_dir():
            return "no such folder in the repository"
    else:
        path, _, fragment = target.partition("#")
        anchor = f"#{fragment}" if fragment else None
        resolved = (link.page.parent / unquote(path)).resolve() if path else link.page
        if not resolved.is_relative_to(ROOT):
            return "points outside the repository"
        if not resolved.exists():
            return "no such file or folder"
    if anchor and resolved.suffix == ".md" and anchor[1:] not in anchors(resolved):
        return f"{resolved.relative_to(ROOT)} has no heading for {anchor}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_resolves(page: Path) -> None:
    """Each relative link, and each link to the repository's files, names a file or folder
    that exists, and each #anchor a heading of its page."""
    broken = [f"{link} ({why})" for link in links(page) if (why := problem(link))]
    assert [] == broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_reference_is_defined(page: Path) -> None:
    """Each `[text][name]` link has its `[name]: address` definition on the same page."""
    text = prose(page.read_text(encoding="utf-8"))
    defined = {name.lower() for name, _ in _DEFINITION.findall(text)}
    used = {(name or text_).lower() for text_, name in _REFERENCE.findall(text)}
    assert set() == used - defined


def test_readme_links_work_on_the_package_index() -> None:
    """The package index shows the README without the repository, so every link in it is an
    absolute https address."""
    relative = [str(link) for link in links(README) if not link.target.startswith("https://")]
    assert [] == relative


def test_the_readme_links_every_docs_page() -> None:
    """Every page in docs/ can be reached from the README, directly or through docs/index.md."""
    readme = {link.target for link in links(README)}
    index = {link.target for link in links(ROOT / "docs" / "index.md")}
    assert f"{REPOSITORY}/blob/main/docs/index.md" in readme
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert page.name in index, f"docs/index.md does not list {page.name}"


def test_project_urls_point_at_the_repository() -> None:
    """The package's URLs are the repository's, and those naming a file name one that exists."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    for url in urls.values():
        assert url == REPOSITORY or url.startswith(REPOSITORY + "/"), url
        assert problem(Link(ROOT / "pyproject.toml", url)) is None, url


def repository_files() -> list[Path]:
    """The repository's files: what git tracks or would track, else every file but caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return sorted(ROOT / name for name in set(listed.split("\0")) if name)
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist, say)
        skipped = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        return sorted(
            path
            for path in ROOT.rglob("*")
            if path.is_file() and not skipped & set(path.relative_to(ROOT).parts)
        )


def test_nothing_cites_files_outside_the_repository() -> None:
    """No file names the design notes, API notes or style notes that lived beside the
    repository, nor their folder: what the code relies on is in docs/."""
    citing = []
    for path in repository_files():
        if not path.is_file():
            continue  # listed by git, deleted in the work tree
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                citing.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert [] == citing


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Flags and `Config`", "flags-and-config"),
        ("The audit trail: `report`", "the-audit-trail-report"),
        ("jq and 64-bit ids", "jq-and-64-bit-ids"),
        ("`async-poller simulate`", "async-poller-simulate"),
        ("The vendor's page, in short [DOC]", "the-vendors-page-in-short-doc"),
    ],
)
def test_slug_follows_github(heading: str, anchor: str) -> None:
    """Headings become the anchors GitHub gives them."""
    assert anchor == slug(heading)


def test_a_broken_link_is_caught() -> None:
    """The check bites: a missing file, a missing heading and a wrong repository path."""
    page = ROOT / "docs" / "events.md"
    wrong = [
        Link(page, "nowhere.md"),
        Link(page, "resilience.md#no-such-heading"),
        Link(page, f"{REPOSITORY}/blob/main/docs/nowhere.md"),
        Link(page, "../../outside.md"),
    ]
    assert all(problem(link) for link in wrong)
    assert problem(Link(page, "resilience.md#throttling")) is None
    assert problem(Link(page, f"{REPOSITORY}/tree/main/examples")) is None
