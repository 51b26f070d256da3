"""What every sink is: a named writer of one part of a processed batch.

``write`` either succeeds, returns the entities whose data the store refused for good (with the store's
reason), or raises: a transient error (the store is down) for the runtime's retry policy, or
``PermanentFailure`` when the refusal cannot be narrowed to entities. Each sink owns its I/O and its metrics;
the order in which sinks run is the checkpoint's (``pipeline/runtime/checkpoint.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from pipeline.runtime.batch import BatchOutput, EntityKey

Refused = dict[EntityKey, str]
T = TypeVar("T")


class PermanentFailure(Exception):
    """A store refused the data for good (a value a column cannot hold, an object key the store refuses), and
    the refusal could not be narrowed to entities: retrying cannot help."""


class Sink(Protocol):
    name: str

    async def write(self, out: BatchOutput) -> Refused: ...


def narrow(
    groups: Sequence[T], write: Callable[[Sequence[T]], None], is_refusal: Callable[[BaseException], bool]
) -> list[tuple[T, str]]:
    """Write ``groups`` together; when the store refuses the data, halve until the refused groups are found.
    Returns them with the store's message. Transient errors propagate (the caller retries the whole write,
    which is idempotent)."""
    try:
        write(groups)
        return []
    except Exception as exc:
        if not is_refusal(exc):
            raise
        if len(groups) == 1:
            return [(groups[0], str(exc)[:2000])]
    middle = len(groups) // 2
    return narrow(groups[:middle], write, is_refusal) + narrow(groups[middle:], write, is_refusal)
