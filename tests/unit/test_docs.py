"""The README and docs/ point at things that exist: relative links (and their #anchors) and the repository paths
named in code spans. Code moves; a page that still names the old place fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
# Code spans naming a file or folder of the repository; the ones a user creates (from an example) are elsewhere.
_REPO_PREFIXES = ("pipeline/", "workers/", "tests/", "docs/", "policies/")


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than - and _ dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(page) if re.match(r"#{1,6} ", line)}


def test_pages_exist() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "architecture.md", "contracts.md", "settings.md", "learning-loop.md", "batch.md",
            "deploy.md", "decisions.md", "testing.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for line in prose(page):
        for target in _LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_repository_paths_in_code_spans_exist(page: Path) -> None:
    missing = []
    for line in prose(page):
        for span in _CODE_SPAN.findall(line):
            candidate = span.split()[0].rstrip(",.:;")
            placeholder = re.search(r"[<>*{}$]", candidate)
            if candidate.startswith(_REPO_PREFIXES) and not placeholder and not (REPO / candidate).exists():
                missing.append(candidate)
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {sorted(set(missing))}"


def test_the_slug_rule_matches_githubs() -> None:
    assert slug(" `batch` (`MODCASCADE_BATCH_*`)") == "batch-modcascade_batch_"
    assert slug("Why the classify hot path is not a faust agent") == "why-the-classify-hot-path-is-not-a-faust-agent"
    assert slug("What is checked, and what is not") == "what-is-checked-and-what-is-not"
