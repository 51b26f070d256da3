"""Where the raw archive files its record files: ``raw/YYYY/MM/DD/HH/<topic>-<digest>.lfr.zst``, by the UTC
hour the batch was written (never before its messages were produced; possibly much later, after lag or an
outage). Writers, deletion, rebuild and retention all find objects through these functions."""

from __future__ import annotations

import calendar
import time

HOUR_MS = 3_600_000
ROOT = "raw/"
SUFFIX = ".lfr.zst"
_HOUR_FORMAT = "%Y/%m/%d/%H"


def object_key(topic: str, digest: str, now: float | None = None) -> str:
    """The key of a record file written at ``now`` (epoch seconds; default: the current time)."""
    return f"{ROOT}{time.strftime(_HOUR_FORMAT, time.gmtime(now))}/{topic}-{digest}{SUFFIX}"


def hour_folders(from_ms: int, to_ms: int) -> list[str]:
    """The folders of every hour from the one holding ``from_ms`` to the one holding ``to_ms``."""
    return [
        f"{ROOT}{time.strftime(_HOUR_FORMAT, time.gmtime(hour * 3600))}/"
        for hour in range(from_ms // HOUR_MS, to_ms // HOUR_MS + 1)
    ]


def hour_written(key: str) -> int | None:
    """Start (epoch ms) of the hour an object was written, from its key; None for a key outside the layout."""
    try:
        return calendar.timegm(time.strptime("/".join(key.split("/")[1:5]), _HOUR_FORMAT)) * 1000
    except ValueError:
        return None
