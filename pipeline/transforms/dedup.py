"""The dedup stage's rules: the key rule (a message's key must name the entity its event changes) and
which events were seen before. An event id is unique per project; the ids of recent durable batches, of
batches in flight and of the batch itself count as seen."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterable
from typing import Any

from pipeline.transforms.events import message_key
from pipeline.transforms.validate import IngestionEvent

EventKey = str  # project id and event id (see ``event_key``): a string, which the garbage collector ignores


def event_key(project_id: str, event_id: str) -> EventKey:
    """Which event an id names: event ids are unique per project (a project id never holds a NUL)."""
    return project_id + "\x00" + event_id


def key_rule_problem(key: bytes | None, event: IngestionEvent) -> str | None:
    """Why a message's key breaks the key rule for its event, or None when it keeps it."""
    expected = message_key(event.project_id, event.entity, event.entity_id)
    if key == expected:
        return None
    return f"message key {_shown(key)} breaks the key rule: this event needs {expected.decode()!r}"


def seen_before(key: EventKey, *memories: Container[EventKey]) -> bool:
    return any(key in memory for memory in memories)


class BoundedSet:
    """Insertion-ordered set that forgets its oldest members beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Any, None] = OrderedDict()

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add_all(self, items: Iterable[Any]) -> None:
        for item in items:
            self._items[item] = None
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def _shown(key: bytes | None) -> str:
    if key is None:
        return "(none)"
    text = key[:200].decode(errors="replace")
    return repr(text + ("..." if len(key) > 200 else ""))
