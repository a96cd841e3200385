"""Every pointer into docs/ resolves, and nothing cites a design document the repository lacks.

Code comments, tests and platform files cite `docs/<page>.md`, optionally with `#anchor`
(docs/README.md); the README and the docs link to each other with relative links. A page or
heading renamed without its citations is a reader sent nowhere, so this suite fails on it.
"""
import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# Where citations live; generated, vendored and result folders are not ours to check.
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "build", "__pycache__", ".pytest_cache", ".hypothesis"}
SKIP_PATHS = {Path("bench/results"), Path("tests/artifacts")}
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".txt", ".service", ".example"}
TEXT_NAMES = {"Makefile", "run"}  # .ci/run has no suffix

DOC_REFERENCE = re.compile(r"(?<![\w./-])docs/((?:[\w.-]+/)*[\w.-]+\.md)(?:#([\w-]+))?")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# The word on its own: SPECTACULAR_SETTINGS (drf-spectacular) is not a citation.
SPEC_CITATION = re.compile(r"\b" + "SPEC" + r"\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page, with GitHub's -1, -2 ... suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def text_files(root: Path):
    """Text files under root, except this one: its own examples of broken references are meant to be."""
    this = Path(__file__).resolve()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.resolve() == this:
            continue
        if any(part in SKIP_DIRS for part in rel.parts) or any(rel.is_relative_to(p) for p in SKIP_PATHS):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            yield path


def markdown_pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def check_target(root: Path, source: Path, target: Path, anchor: str | None, what: str) -> str | None:
    where = source.relative_to(root)
    if not target.is_file():
        return f"{where}: {what} names a missing file"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{where}: {what} names a missing heading"
    return None


def broken_doc_references(root: Path) -> tuple[int, list[str]]:
    """`docs/<page>.md[#anchor]` anywhere in the repository, resolved from its root."""
    found, broken = 0, []
    for path in text_files(root):
        for match in DOC_REFERENCE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            found += 1
            problem = check_target(root, path, root / "docs" / match.group(1), match.group(2), match.group(0))
            if problem:
                broken.append(problem)
    return found, broken


def broken_relative_links(root: Path) -> tuple[int, list[str]]:
    """Relative links in the README and docs/, resolved from the page that holds them."""
    found, broken = 0, []
    for page in markdown_pages(root):
        for link in MARKDOWN_LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):  # http:, mailto: ...
                continue
            found += 1
            target, _, anchor = link.partition("#")
            problem = check_target(root, page, (page.parent / target).resolve() if target else page, anchor, link)
            if problem:
                broken.append(problem)
    return found, broken


def spec_citations(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root)}:{number}"
        for path in text_files(root)
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if SPEC_CITATION.search(line)
    ]


def test_every_docs_reference_resolves():
    found, broken = broken_doc_references(ROOT)
    assert found >= 20, f"only {found} references to docs/ found: is the scan looking in the right place?"
    assert broken == []


def test_every_relative_link_in_readme_and_docs_resolves():
    found, broken = broken_relative_links(ROOT)
    assert found >= 20, f"only {found} relative links found: is the scan looking in the right place?"
    assert broken == []


def test_nothing_cites_a_spec_the_repository_does_not_hold():
    assert spec_citations(ROOT) == []


def test_readme_stays_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "make run" in readme and "make test" in readme


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Try the authorizer locally", "try-the-authorizer-locally"),
        ("1. Build the zip", "1-build-the-zip"),
        ("0003: `visible_to` filters, without `DISTINCT`", "0003-visible_to-filters-without-distinct"),
        ("Snapshots: from the database to DynamoDB", "snapshots-from-the-database-to-dynamodb"),
        ("See [the API](api.md) — here", "see-the-api--here"),
    ],
)
def test_slug_matches_github(heading, expected):
    assert slug(heading) == expected


def make_tree(root: Path, citing: str, link: str) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "page.md").write_text("# Page\n\n## A section\n\n## A section\n", encoding="utf-8")
    (root / "README.md").write_text(f"# Front\n\n[page]({link})\n", encoding="utf-8")
    (root / "app.py").write_text(f"# {citing}\n", encoding="utf-8")


def test_the_checks_pass_a_tree_whose_references_resolve(tmp_path):
    make_tree(tmp_path, "docs/page.md#a-section-1", "docs/page.md#a-section")
    assert broken_doc_references(tmp_path) == (2, [])  # app.py's citation and the README's link
    assert broken_relative_links(tmp_path) == (1, [])


@pytest.mark.parametrize(
    ("citing", "link", "broken"),
    [
        ("docs/gone.md", "docs/page.md", "app.py: docs/gone.md names a missing file"),
        ("docs/page.md#nope", "docs/page.md", "app.py: docs/page.md#nope names a missing heading"),
        ("docs/page.md", "docs/gone.md", "README.md: docs/gone.md names a missing file"),
        ("docs/page.md", "docs/page.md#nowhere", "README.md: docs/page.md#nowhere names a missing heading"),
        ("docs/page.md", "#nowhere", "README.md: #nowhere names a missing heading"),
    ],
)
def test_the_checks_report_a_broken_reference(tmp_path, citing, link, broken):
    make_tree(tmp_path, citing, link)
    reported = broken_doc_references(tmp_path)[1] + broken_relative_links(tmp_path)[1]
    assert broken in reported


def test_a_spec_citation_is_reported(tmp_path):
    make_tree(tmp_path, "see " + "SPEC" + " §4", "docs/page.md")
    (tmp_path / "settings.py").write_text("SPECTACULAR_SETTINGS = {}\n", encoding="utf-8")
    assert spec_citations(tmp_path) == ["app.py:1"]
