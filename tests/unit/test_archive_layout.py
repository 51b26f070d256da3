from __future__ import annotations

from pipeline.archive_layout import HOUR_MS, hour_folders, hour_written, object_key


def test_a_written_key_is_found_in_its_hours_folder_and_tells_that_hour():
    written_s = 1_764_000_000.5  # 2025-11-24T16:00:00.5Z
    key = object_key("ingestion", "abc", written_s)
    assert key == "raw/2025/11/24/16/ingestion-abc.lfr.zst"
    assert key.startswith(hour_folders(int(written_s * 1000), int(written_s * 1000))[0])
    assert hour_written(key) == int(written_s * 1000) // HOUR_MS * HOUR_MS


def test_hour_folders_span_both_ends_inclusive():
    folders = hour_folders(HOUR_MS - 1, 3 * HOUR_MS)
    assert folders == ["raw/1970/01/01/00/", "raw/1970/01/01/01/", "raw/1970/01/01/02/", "raw/1970/01/01/03/"]
