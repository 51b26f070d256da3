"""Prometheus metrics of a gateway (its ``/metrics``). Label values come from fixed sets: the endpoint is the
route's name, never the request path. With several worker processes, prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``gateway/serve.py``) sums them on every ``/metrics`` answer."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "lfpipe_gateway_requests_total", "HTTP requests by endpoint and answered status", ["endpoint", "status"]
)
EVENTS = Counter(
    "lfpipe_gateway_events_total",
    "Events received: accepted (acknowledged by Kafka), rejected (400, dead-lettered), scope_denied, sdk_log",
    ["endpoint", "outcome"],
)
BAD_REQUESTS = Counter(
    "lfpipe_gateway_bad_requests_total",
    "Requests refused whole: malformed_body, content_type, too_large, compression, unauthorized, forbidden, "
    "kafka_unavailable",
    ["endpoint", "reason"],
)
REQUEST_SECONDS = Histogram(
    "lfpipe_gateway_request_seconds",
    "Request latency, first byte read to answer",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
PRODUCE_SECONDS = Histogram(
    "lfpipe_gateway_produce_seconds",
    "Time from handing a request's events to Kafka to every acknowledgement",
    buckets=LATENCY_BUCKETS,
)
MEDIA_UPLOADS = Counter(
    "lfpipe_gateway_media_upload_reports_total", "Upload results SDKs reported (PATCH /media/{id})", ["result"]
)


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
