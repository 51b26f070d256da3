"""What a worker keeps in memory between batches: merged entity states, bounded (the seen event ids are
``transforms.dedup.BoundedSet``). Entities of batches still in flight are pinned: evicting them would let the
next batch re-read a row from ClickHouse that does not have their changes yet."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from pipeline.transforms.merge import EntityState

EntityKey = tuple[str, str, str]


class StateStore:
    """Merged entity states, least recently used evicted beyond ``limit`` (they can be re-read), except pinned
    ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._states: OrderedDict[EntityKey, EntityState] = OrderedDict()
        # One set of keys per batch in flight (at most two batches, so membership is two lookups).
        self._pinned: list[set[EntityKey]] = []

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: EntityKey) -> bool:
        return key in self._states

    def get(self, key: EntityKey) -> EntityState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, state: EntityState) -> None:
        self._states[state.key] = state
        self._states.move_to_end(state.key)

    def pin(self, keys: set[EntityKey]) -> None:
        """Keep ``keys`` (one batch's entities, this very set) until ``unpin`` is given the same set."""
        self._pinned.append(keys)

    def unpin(self, keys: set[EntityKey]) -> None:
        self._pinned = [pinned for pinned in self._pinned if pinned is not keys]

    def remove(self, keys: Iterable[EntityKey]) -> None:
        for key in keys:
            self._states.pop(key, None)

    def discard(self, condition: Callable[[EntityState], bool]) -> None:
        for key in [key for key, state in self._states.items() if condition(state)]:
            del self._states[key]

    def trim(self) -> None:
        excess = len(self._states) - self.limit
        if excess <= 0:
            return
        evicted = []
        for key in self._states:  # oldest first
            if len(evicted) == excess:
                break
            if not any(key in pinned for pinned in self._pinned):
                evicted.append(key)
        for key in evicted:
            del self._states[key]

    def clear(self) -> None:
        self._states.clear()
        self._pinned.clear()
