"""The one retry policy of the worker: every sink write and every stored-state read goes through ``retried``.

A store that is down or slow (connection refused, timeout, 5xx, throttling) is retried with exponential
back-off and full jitter, for as long as it takes: that is backpressure, the batch waits and nothing more is
fetched. A store that refuses the data itself raises ``PermanentFailure``, which is never retried: the sink
that raised it has already narrowed it down to the refused entities.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from pipeline import metrics
from pipeline.sinks.base import PermanentFailure

log = logging.getLogger("lfpipe.retry")
T = TypeVar("T")
FIRST_DELAY_SECONDS = 0.2


def is_transient(exc: BaseException) -> bool:
    # Cancellation (shutdown) and permanent failures end the attempts; every other error is worth a retry.
    return isinstance(exc, Exception) and not isinstance(exc, PermanentFailure)


class Health:
    """Which stores are being retried right now (``/readyz`` answers 503 while any is)."""

    def __init__(self) -> None:
        self.failing: set[str] = set()


async def retried(what: str, attempt: Callable[[], Awaitable[T]], max_seconds: float, health: Health) -> T:
    """``attempt()`` until it succeeds or fails permanently; ``what`` names the store in logs and metrics."""

    def note_failure(state: RetryCallState) -> None:
        health.failing.add(what)
        metrics.SINK_ERRORS.labels(what).inc()
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)

    policy = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=FIRST_DELAY_SECONDS, max=max_seconds, jitter=FIRST_DELAY_SECONDS),
        before_sleep=note_failure,
        reraise=True,
    )
    try:
        async for trial in policy:
            with trial:
                result = await attempt()
    finally:
        health.failing.discard(what)
    return result
