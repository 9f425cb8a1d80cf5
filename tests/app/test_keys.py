"""app/keys.py is the whole Redis layout: no other module spells a key, and no two entries collide."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app import keys

ROOT = Path(__file__).resolve().parents[2]
KEY_LIKE = re.compile(r"^(bindery:\S|unacked(:|$))")  # (not a message such as "bindery: serving on ...")


def test_a_key_fills_its_parts_in_order() -> None:
    assert keys.TIMINGS_REPO("build", "abc") == "bindery:timings:build:repo:abc"
    assert keys.LAUNCHES_ACTIVE() == "bindery:launches:active"
    assert keys.EVENTS.glob == "bindery:events:*"
    with pytest.raises(TypeError):
        keys.EVENTS()


def test_every_entry_is_documented_and_distinct() -> None:
    assert len({key.pattern for key in keys.KEYS}) == len(keys.KEYS) > 20
    for key in keys.KEYS:
        assert key.type and key.owner and key.lifetime and key.purpose.endswith("."), key.pattern


def test_no_module_spells_a_redis_key_of_its_own() -> None:
    found = []
    for package in ("app", "tasks", "providers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py" and path.parent.name == "app":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY_LIKE.match(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "Redis keys belong in app/keys.py:\n" + "\n".join(found)
