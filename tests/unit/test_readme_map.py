"""The README's "Following one event" map stays true: every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_path_in_the_map_exists():
    section = (ROOT / "README.md").read_text().split("## Following one event", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"(?:pipeline|devstack|topics)/[\w/.-]*", section))
    assert len(paths) > 30
    assert sorted(path for path in paths if not (ROOT / path).exists()) == []
