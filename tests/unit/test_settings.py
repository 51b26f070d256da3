"""The README's configuration table and ``Settings`` say the same thing: every setting documented, with its
default, and settings cannot change once read."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from pipeline.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _table_rows() -> list[tuple[list[str], str]]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and "LFPIPE_" in cells[0]:
            rows.append((re.findall(r"LFPIPE_[A-Z0-9_]+", cells[0]), cells[1]))
    return rows


def test_every_setting_is_in_the_readme_table_and_nothing_else():
    documented = {name for names, _ in _table_rows() for name in names}
    assert documented == {f"LFPIPE_{field.upper()}" for field in Settings.model_fields}


def test_the_readme_gives_each_plain_default():
    checked = 0
    for names, default_cell in _table_rows():
        if len(names) != 1:
            continue
        default = Settings.model_fields[names[0].removeprefix("LFPIPE_").lower()].default
        shown = re.match(r"`([^`]*)`", default_cell)
        if isinstance(default, bool) or default is None or shown is None:
            continue
        if isinstance(default, int | float):
            assert float(shown.group(1)) == default, names[0]
        else:
            assert shown.group(1) == str(default), names[0]
        checked += 1
    assert checked >= 25


def test_every_setting_is_described():
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(pydantic.ValidationError):
        settings.batch_max_events = 1  # type: ignore[misc]
    assert settings.model_copy(update={"batch_max_events": 1}).batch_max_events == 1
