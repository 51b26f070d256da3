"""The worker's HTTP endpoints (Faust's web server, on ``LFPIPE_WORKER_WEB_BIND``:``LFPIPE_WORKER_WEB_PORT``):
``/metrics`` for Prometheus, ``/healthz`` (the event loop answers) and ``/readyz`` (able to make progress).
Nothing here reads or writes data: ``lfpipe query`` has its own owner-only socket (``runtime/query.py``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import generate_latest

if TYPE_CHECKING:
    from pipeline.runtime.app import Worker


def readiness(worker: Worker) -> tuple[bool, dict[str, Any]]:
    """Ready: the catalog is read, partitions are assigned, and no store is being retried."""
    problems = []
    if not worker.ingestion.ready.is_set():
        problems.append("reading the config topic")
    if not worker.source.assigned:
        problems.append("no partitions assigned")
    problems += [f"{sink} is failing (retrying)" for sink in sorted(worker.health.failing)]
    partitions = sorted(tp.partition for tp in worker.source.assigned)
    return not problems, {"ready": not problems, "problems": problems, "partitions": partitions}


def add_pages(app: faust.App, worker: Worker) -> None:
    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "pid": os.getpid()})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready, body = readiness(worker)
        return web.json(body, status=200 if ready else 503)
