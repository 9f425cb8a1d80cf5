"""The documentation stays true to the tree: links resolve, the README stays short, every Redis key is listed.

docs/configuration.md is checked against the schema in tests/app/test_config.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md",
         ROOT / "charts" / "bindery" / "README.md", ROOT / "contrib" / "jupyterhub" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A Redis key Bindery names in code: the literal part before any placeholder ("bindery: " is a log prefix).
KEY_LITERAL = re.compile(r"""["']bindery:([a-z][a-z0-9_.-]*(?::[a-z][a-z0-9_.-]*)*:?)""")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    targets = [target for target in LINK.findall(page.read_text()) if "://" not in target]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_is_short_and_shows_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert len(text.splitlines()) <= 150, "the README points to docs/; reference material belongs there"


def _registry_patterns() -> list[str] | None:
    """The key patterns of app/keys.py's ``KEYS`` registry, once the tree has it."""
    try:
        from app import keys  # type: ignore[attr-defined]
    except ImportError:
        return None
    entries = getattr(keys, "KEYS", None)
    if entries is None:
        return None
    values = entries.values() if isinstance(entries, dict) else entries
    return [str(getattr(entry, "pattern", None) or entry[0]) for entry in values]


def _named_in_code() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for top in ("app", "tasks", "providers"):
        for path in (ROOT / top).rglob("*.py"):
            for literal in KEY_LITERAL.findall(path.read_text()):
                named.setdefault("bindery:" + literal, set()).add(str(path.relative_to(ROOT)))
    return named


def test_architecture_lists_every_redis_key() -> None:
    """Every key of app/keys.py (or, before it exists, every ``bindery:`` key the code names) is in the table."""
    layout = (ROOT / "docs" / "architecture.md").read_text()
    patterns = _registry_patterns()
    if patterns is not None:
        prefixes = {re.split(r"[{<*]", pattern, maxsplit=1)[0]: {"app/keys.py"} for pattern in patterns}
    else:
        prefixes = _named_in_code()
    assert len(prefixes) > 10, f"found too few keys to be reading the code: {sorted(prefixes)}"
    unlisted = {key: sorted(paths) for key, paths in prefixes.items() if key not in layout}
    assert not unlisted, f"docs/architecture.md (Redis keys) does not list: {unlisted}"
