"""The ingestion endpoints: Langfuse's batch API, OTLP/HTTP traces, and the v5 SDK's score call.

Each answers success only after Kafka acknowledged every accepted event of the request (``Gateway.deliver``).
"""

from __future__ import annotations

import uuid

import orjson
from aiohttp import web

from pipeline.gateway import metrics
from pipeline.gateway.app import GATEWAY, Refusal, attribution, header, json_response, now_iso, read_body
from pipeline.gateway.auth import ALL
from pipeline.gateway.batch_api import InvalidRequest, Planned, plan_batch, plan_events
from pipeline.gateway.otel import OtlpError, decode_request, export_response, spans_to_events

SCORE_NAMESPACE = uuid.UUID("6b0f2f7e-2d6c-4c55-9a53-0f4f1d1e9a41")  # ids of scores sent without one (uuid5)
MAX_INGESTION_VERSION = 4
SCORES_BODY_BYTES = 1_048_576  # Langfuse serves /scores with Next.js's default 1 MiB limit


async def ingestion(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request)
    body = await read_body(request, gateway.settings.gateway_max_batch_bytes)
    try:
        planned = plan_batch(body, caller, attribution(request, caller), gateway.settings.max_event_bytes)
    except InvalidRequest as exc:
        raise Refusal(400, {"message": "Invalid request data", "errors": [str(exc)]}, "malformed_body") from None
    await gateway.deliver(planned.messages, planned.letters)
    _count("ingestion", planned)
    return json_response(planned.response(), 207)


async def otel_traces(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request, ALL)
    version = header(request, "ingestion-version")
    if version and (not version.isdigit() or int(version) > MAX_INGESTION_VERSION):
        raise Refusal(400, {"error": f"Unsupported x-langfuse-ingestion-version {version!r}"}, "malformed_body")
    body = await read_body(request, gateway.settings.gateway_max_otel_bytes)  # gzip already undone by aiohttp
    content_type = request.headers.get("Content-Type", "")
    try:
        resource_spans = decode_request(body, content_type)
    except OtlpError as exc:
        reason = "content_type" if "content type" in str(exc).lower() else "malformed_body"
        raise Refusal(400, {"error": str(exc)}, reason) from None
    events = [orjson.dumps(event) for event in spans_to_events(resource_spans, caller.project_id)]
    planned = plan_events(events, caller, attribution(request, caller), gateway.settings.max_event_bytes)
    await gateway.deliver(planned.messages, planned.letters)
    _count("otel", planned)
    reply, reply_type = export_response(content_type)
    return web.Response(body=reply, status=200, content_type=reply_type)


async def scores(request: web.Request) -> web.Response:
    """``POST /api/public/scores``. A list of scores (the v5 SDK): 202 ``{"message": "Accepted"}`` once Kafka has
    them all, or 207 ``{accepted, rejected, errors}`` when some are invalid. One score object (the older API
    clients): 200 ``{"id"}``, or 400. A score without an id gets one derived from its content, so a re-sent
    request is the same score."""
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request)
    body = await read_body(request, SCORES_BODY_BYTES)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = {"message": "Invalid request data", "error": f"malformed JSON: {exc}"}
        raise Refusal(400, message, "malformed_body") from None
    items = document if isinstance(document, list) else [document]
    events = [orjson.dumps(_score_event(caller.project_id, item)) for item in items]
    planned = plan_events(events, caller, attribution(request, caller), gateway.settings.max_event_bytes)
    await gateway.deliver(planned.messages, planned.letters)
    _count("scores", planned)
    if not isinstance(document, list):
        if planned.errors:
            error = planned.errors[0]
            raise Refusal(error["status"], {"message": error["message"], "error": error["error"]}, "malformed_body")
        return json_response({"id": planned.successes[0]["id"]})
    if not planned.errors:
        return json_response({"message": "Accepted"}, 202)
    errors = [{"message": f"{error['message']}: {error['error']}"} for error in planned.errors]
    return json_response({"accepted": len(planned.successes), "rejected": len(errors), "errors": errors}, 207)


def _score_event(project_id: str, score: object) -> object:
    """A ``score-create`` event for one score of the request (anything else is left for validation to refuse)."""
    if not isinstance(score, dict):
        return score
    score_id = score.get("id") or str(uuid.uuid5(SCORE_NAMESPACE, project_id + "\x00" + orjson.dumps(score).decode()))
    return {"id": str(score_id), "timestamp": now_iso(), "type": "score-create", "body": {**score, "id": score_id}}


def _count(endpoint: str, planned: Planned) -> None:
    for outcome, count in planned.outcomes.items():
        metrics.EVENTS.labels(endpoint, outcome).inc(count)
