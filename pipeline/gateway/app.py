"""The gateway's HTTP application: the Langfuse endpoints, their shared plumbing, and the process's lifecycle.

A request is answered by one of ``routes.py`` (ingestion, OTLP, scores) or ``media_routes.py``; everything
they share is here: authentication, bounded body reads, the header spellings, and one middleware that turns
refusals into Langfuse's status codes and bodies and counts every answer by endpoint and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from pipeline.config import Settings
from pipeline.endpoints import Endpoints
from pipeline.gateway import metrics
from pipeline.gateway.auth import ALL, Caller, Unauthorized, authenticate, unauthorized_body
from pipeline.gateway.delivery import Delivery, Unavailable
from pipeline.gateway.keys import KeyRing
from pipeline.sources.config_feed import ConfigFeed
from pipeline.stores.objects import ObjectStore
from pipeline.transforms.validate import iso_utc

log = logging.getLogger("lfpipe.gateway")
VERSION = "0.1.0"
JSON = "application/json"


class Refusal(Exception):
    """A whole request refused: its status, Langfuse's body, and a reason label for the metrics."""

    def __init__(self, status: int, body: Any, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status, self.body, self.reason, self.headers = status, body, reason, headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)


class Gateway:
    """What every request of one gateway process shares: keys, the Kafka producer, object storage."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.keys = KeyRing()
        self.feed = ConfigFeed(endpoints.kafka_bootstrap, settings.topic("config"), self.keys.apply)
        self.store: ObjectStore = endpoints.archive()
        self.delivery = Delivery(
            endpoints.kafka_bootstrap,
            settings.topic("ingestion"),
            settings.topic("ingestion-deadletter"),
            self.store,
            settings.gateway_ack_timeout_seconds,
        )
        self.stopping = False
        self._feeding: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.delivery.start()
        self._feeding = asyncio.create_task(self._follow_keys())

    async def _follow_keys(self) -> None:
        # Kafka may be away when a gateway starts: keep trying; until the keys are read, requests get 503.
        delay = 0.5
        while True:
            try:
                await self.feed.start()
                return
            except Exception as exc:
                await self.feed.stop()
                log.warning("cannot read API keys from the config topic (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def stop(self) -> None:
        self.stopping = True
        if self._feeding is not None:
            self._feeding.cancel()
        await self.feed.stop()
        await self.delivery.stop()
        await self.store.close()

    def problems(self) -> list[str]:
        problems = []
        if not self.feed.caught_up.is_set():
            problems.append("reading API keys from the config topic")
        if not self.delivery.connected:
            problems.append("connecting to Kafka")
        elif self.delivery.failing:
            problems.append("Kafka is not acknowledging writes")
        return problems

    def caller(self, request: web.Request, scope: str | None = None) -> Caller:
        """The authenticated caller; ``scope=ALL`` refuses public-key-only (Bearer) callers with 403."""
        if not self.feed.caught_up.is_set():
            raise unavailable("API keys are still being read from the config topic", self.settings)
        try:
            caller = authenticate(request.headers.get("Authorization"), self.keys)
        except Unauthorized as exc:
            raise Refusal(401, unauthorized_body(str(exc)), "unauthorized") from None
        if scope == ALL and caller.scope != ALL:
            raise Refusal(403, {"message": "Access denied - insufficient permissions for this endpoint"}, "forbidden")
        return caller

    async def deliver(self, messages: list[Any], letters: list[Any] = ()) -> None:  # type: ignore[assignment]
        started = time.perf_counter()
        try:
            await self.delivery.deliver(messages, letters)
        except Unavailable as exc:
            raise unavailable(str(exc), self.settings) from None
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)


def unavailable(message: str, settings: Settings) -> Refusal:
    """503 with Retry-After: every client retries it (429 would make the OTLP exporter drop the batch)."""
    retry_after = str(settings.gateway_retry_after_seconds)
    body = {"message": "Service Unavailable", "error": message}
    return Refusal(503, body, "kafka_unavailable", {"Retry-After": retry_after})


def now_iso() -> str:
    return iso_utc(int(time.time() * 1000))


def header(request: web.Request, name: str) -> str:
    """A Langfuse header in either spelling: ``x-langfuse-<name>`` or ``x_langfuse_<name>`` (SDK v2)."""
    return (
        request.headers.get(f"x-langfuse-{name}") or request.headers.get(f"x_langfuse_{name.replace('-', '_')}") or ""
    )


def attribution(request: web.Request, caller: Caller) -> dict[str, str]:
    """The headers stored with each event (scores keep them): the key that authenticated, and the SDK."""
    return {
        "x-langfuse-public-key": caller.public_key,
        "x-langfuse-sdk-name": header(request, "sdk-name")[:100],
        "x-langfuse-sdk-version": header(request, "sdk-version")[:100],
    }


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes. aiohttp undoes a
    ``Content-Encoding: gzip`` while reading, so the limit holds for what the body unpacks to (a small bomb
    stays small)."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def too_large(limit: int) -> Refusal:
    message = f"Body exceeded {limit / 1048576:g}mb limit ({limit} bytes)"
    return Refusal(413, {"message": message, "error": "PayloadTooLargeError"}, "too_large")


@web.middleware
async def answer(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refusals and router errors as JSON bodies; every answer counted and timed by endpoint."""
    route = request.match_info.route
    endpoint = route.name or "other"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Refusal as refusal:
        metrics.BAD_REQUESTS.labels(endpoint, refusal.reason).inc()
        log.info("%s %s refused with %s: %s", request.method, endpoint, refusal.status, str(refusal.body)[:300])
        response = json_response(refusal.body, refusal.status, refusal.headers)
    except web.HTTPException as exc:  # unknown path, wrong method
        name = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status, "HTTPError")
        response = json_response({"error": name, "message": exc.reason}, exc.status)
    metrics.REQUESTS.labels(endpoint, str(response.status)).inc()
    metrics.REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return response


GATEWAY = web.AppKey("gateway", Gateway)


async def projects(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request)
    if caller.scope != ALL:
        raise Refusal(403, {"message": "Invalid API key. Are you using an organization key?"}, "forbidden")
    organization = {"id": "lfpipe", "name": "lfpipe"}
    project = {"id": caller.project_id, "name": caller.project_id, "organization": organization, "metadata": {}}
    return json_response({"data": [project]})


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "OK", "version": VERSION})


async def ready(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    if gateway.stopping:
        return json_response({"status": "shutting down"}, 500)
    problems = gateway.problems()
    return json_response({"status": "; ".join(problems) if problems else "OK"}, 503 if problems else 200)


async def metrics_page(request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")


def make_app(gateway: Gateway) -> web.Application:
    from pipeline.gateway import media_routes, routes  # the handlers import this module's plumbing

    limit = max(gateway.settings.gateway_max_batch_bytes, gateway.settings.gateway_max_otel_bytes)
    app = web.Application(middlewares=[answer], client_max_size=limit + 1)
    app[GATEWAY] = gateway
    app.router.add_post("/api/public/ingestion", routes.ingestion, name="ingestion")
    app.router.add_post("/api/public/otel/v1/traces", routes.otel_traces, name="otel")
    app.router.add_post("/api/public/scores", routes.scores, name="scores")
    app.router.add_get("/api/public/projects", projects, name="projects")
    app.router.add_get("/api/public/health", health, name="health")
    app.router.add_get("/api/public/ready", ready, name="ready")
    app.router.add_post("/api/public/media", media_routes.announce, name="media_announce")
    app.router.add_patch("/api/public/media/{media_id}", media_routes.report, name="media_report")
    app.router.add_get("/api/public/media/{media_id}", media_routes.fetch, name="media_fetch")
    app.router.add_get("/metrics", metrics_page, name="metrics")

    async def lifecycle(app: web.Application) -> Any:
        await gateway.start()
        yield
        with contextlib.suppress(Exception):
            await gateway.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
