"""Retention policy arithmetic and archive trimming, without services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest

from pipeline.archive_layout import hour_written
from pipeline.operations.retention import DAY_MS, Policy, _project_of
from pipeline.recordfile import Record, decode_records, encode_records
from pipeline.sinks.archive import filter_records

NOW_MS = 1_800_000_000_000


def test_listed_projects_use_their_days_and_others_the_default(tmp_path):
    (tmp_path / "p.toml").write_text('default_days = 90\n[projects]\n"short" = 7\n"acme:prod" = 0.5\n')
    policy = Policy.load(tmp_path / "p.toml")
    cutoffs = policy.cutoffs({"short", "other"}, NOW_MS)
    assert cutoffs == {
        "short": NOW_MS - 7 * DAY_MS,
        "other": NOW_MS - 90 * DAY_MS,
        "acme:prod": NOW_MS - DAY_MS // 2,
    }


def test_without_a_default_unlisted_projects_are_kept_forever(tmp_path):
    (tmp_path / "p.toml").write_text('[projects]\n"short" = 7\n')
    assert Policy.load(tmp_path / "p.toml").cutoffs({"short", "other"}, NOW_MS) == {"short": NOW_MS - 7 * DAY_MS}


def test_negative_days_are_refused(tmp_path):
    (tmp_path / "p.toml").write_text('[projects]\n"p" = -1\n')
    with pytest.raises(ValueError, match="negative"):
        Policy.load(tmp_path / "p.toml")


def test_archive_keys_tell_their_hour_in_utc():
    assert hour_written("raw/1970/01/01/01/ingestion-abc.lfr.zst") == 3_600_000
    assert hour_written("raw/2026/11/22/15/x") == datetime(2026, 11, 22, 15, tzinfo=UTC).timestamp() * 1000
    assert hour_written("media/p/x.png") is None


def test_expired_projects_leave_an_object_and_others_stay_byte_for_byte():
    def record(project: str, n: int) -> Record:
        return Record(orjson.dumps({"project_id": project, "id": f"e{n}"}), offset=n)

    def keep(expired: set[str]) -> Callable[[Record], bool]:
        return lambda record: _project_of(record.value) not in expired

    data = encode_records([record("a", 1), record("b", 2), Record(b"not json", offset=3), record("a", 4)])
    kept, removed = filter_records(data, keep({"a"}))
    assert removed == 2
    assert [r.offset for r in decode_records(kept)] == [2, 3]
    assert filter_records(data, keep({"c"})) == (data, 0)
    assert filter_records(encode_records([record("a", 1)]), keep({"a"})) == (None, 1)
