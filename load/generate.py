"""Deterministic synthetic ingestion streams of realistic shape.

Each trace is a small agent run: a trace-create, a retrieval span, one or more generations with usage (some
with cache and reasoning details), tool spans, a trace update with the output, and scores. A seeded random
source then moves some updates ahead of their creates, repeats some events (producer retries) and mixes in
invalid messages, so every path of the worker is exercised.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.producer import message_key
from pipeline.recordfile import Record

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-20241022", "gemini-2.0-flash", "my-finetune-v2")
WORDS = [
    "the",
    "model",
    "retrieved",
    "context",
    "about",
    "invoices",
    "refunds",
    "shipping",
    "policy",
    "and",
    "answered",
    "the",
    "user",
    "question",
]


@dataclass(frozen=True)
class StreamShape:
    traces: int = 1200
    projects: int = 3
    out_of_order: float = 0.05
    duplicates: float = 0.01
    invalid: float = 0.005
    seed: int = 7
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _envelope(project: str, event_id: str, moment: datetime, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "timestamp": _iso(moment), "type": kind, "project_id": project, "body": body}


def _usage(rng: random.Random) -> dict[str, Any]:
    prompt = rng.randint(50, 4000)
    completion = rng.randint(5, 800)
    form = rng.random()
    if form < 0.5:
        return {"usage": {"input": prompt, "output": completion}}
    if form < 0.8:
        cached = rng.randint(0, prompt // 2)
        return {
            "usageDetails": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
        }
    return {"usageDetails": {"input": prompt, "output": completion, "output_reasoning_tokens": rng.randint(0, 200)}}


def trace_events(rng: random.Random, project: str, trace_no: int, start: datetime) -> list[dict[str, Any]]:
    trace_id = f"trace-{project}-{trace_no:06d}"
    clock = start
    events: list[dict[str, Any]] = []

    def add(kind: str, body: dict[str, Any], step_ms: int) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=step_ms)
        events.append(_envelope(project, f"{trace_id}-ev{len(events):03d}", clock, kind, body))

    question = _text(rng, rng.randint(5, 30))
    add(
        "trace-create",
        {
            "id": trace_id,
            "name": rng.choice(("chat", "rag-answer", "support-agent")),
            "userId": f"user-{rng.randint(1, 300)}",
            "sessionId": f"session-{rng.randint(1, 500)}",
            "tags": rng.sample(("prod", "beta", "eu", "mobile", "web"), 2),
            "metadata": {"tenant": f"t{rng.randint(1, 20)}", "request": {"region": "eu-west-1"}},
            "input": {"question": question},
            "environment": rng.choice(("production", "staging")),
        },
        0,
    )
    retrieval = f"{trace_id}-retrieve"
    add("span-create", {"id": retrieval, "traceId": trace_id, "name": "retrieve", "input": {"query": question}}, 3)
    add(
        "span-update",
        {
            "id": retrieval,
            "output": {"documents": [_text(rng, 40) for _ in range(3)]},
            "endTime": _iso(clock + timedelta(milliseconds=40)),
        },
        45,
    )
    for step in range(rng.randint(1, 3)):
        generation = f"{trace_id}-gen{step}"
        model = rng.choice(MODELS)
        add(
            "generation-create",
            {
                "id": generation,
                "traceId": trace_id,
                "parentObservationId": retrieval,
                "name": f"llm-step-{step}",
                "model": model,
                "modelParameters": {"temperature": 0.2, "max_tokens": 512},
                "input": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": question}],
            },
            5,
        )
        add(
            "generation-update",
            {
                "id": generation,
                "output": {"role": "assistant", "content": _text(rng, rng.randint(10, 120))},
                "endTime": _iso(clock + timedelta(milliseconds=rng.randint(200, 2000))),
                "completionStartTime": _iso(clock + timedelta(milliseconds=150)),
                **_usage(rng),
            },
            rng.randint(200, 2000),
        )
        if rng.random() < 0.4:
            tool = f"{trace_id}-tool{step}"
            add(
                "tool-create",
                {
                    "id": tool,
                    "traceId": trace_id,
                    "parentObservationId": generation,
                    "name": "lookup_order",
                    "input": {"order": rng.randint(1000, 9999)},
                    "output": {"status": "shipped"},
                },
                10,
            )
    add("trace-create", {"id": trace_id, "output": {"answer": _text(rng, 20)}, "tags": ["answered"]}, 5)
    add(
        "score-create",
        {"id": f"{trace_id}-quality", "traceId": trace_id, "name": "quality", "value": round(rng.random(), 3)},
        50,
    )
    if rng.random() < 0.3:
        add(
            "score-create",
            {
                "id": f"{trace_id}-helpful",
                "traceId": trace_id,
                "name": "helpful",
                "value": rng.choice((0, 1)),
                "dataType": "BOOLEAN",
                "comment": "user feedback",
            },
            900,
        )
    if rng.random() < 0.2:
        add(
            "score-create",
            {
                "id": f"{trace_id}-topic",
                "traceId": trace_id,
                "name": "topic",
                "value": rng.choice(("billing", "shipping", "other")),
            },
            20,
        )
    return events


INVALID_MESSAGES: tuple[bytes, ...] = (
    b'{"id": "broken", "timestamp": ',
    orjson.dumps(
        {
            "id": "x1",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "trace-upsert",
            "project_id": "p",
            "body": {"id": "t"},
        }
    ),
    orjson.dumps(
        {
            "id": "x2",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "span-create",
            "project_id": "p",
            "body": {"name": "no id"},
        }
    ),
    orjson.dumps(
        {
            "id": "x3\r",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "trace-create",
            "project_id": "p",
            "body": {"id": "t"},
        }
    ),
    orjson.dumps(
        {"id": "x4", "timestamp": "yesterday", "type": "trace-create", "project_id": "p", "body": {"id": "t"}}
    ),
    orjson.dumps(
        {
            "id": "x5",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "trace-create",
            "project_id": "p",
            "body": {"id": "t", "name": "n" * 1001},
        }
    ),
    orjson.dumps(
        {
            "id": "x6",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "score-create",
            "project_id": "p",
            "body": {"name": "s", "value": 7, "dataType": "BOOLEAN", "traceId": "t"},
        }
    ),
)


def generate_stream(shape: StreamShape) -> Iterator[Record]:
    """Records in send order: traces interleaved in time, with the configured disorder and noise."""
    rng = random.Random(shape.seed)
    projects = [f"project-{n}" for n in range(shape.projects)]
    for trace_no in range(shape.traces):
        # Skewed: the first project gets most of the traffic, as real tenants do.
        project = projects[min(int(rng.expovariate(1.2)), len(projects) - 1)]
        start = shape.start + timedelta(seconds=trace_no * 0.5)
        events = trace_events(rng, project, trace_no, start)
        for index in range(1, len(events)):
            if rng.random() < shape.out_of_order:
                events[index - 1], events[index] = events[index], events[index - 1]
        for event in events:
            record = Record(value=orjson.dumps(event), key=message_key(event))
            yield record
            if rng.random() < shape.duplicates:
                yield record
            if rng.random() < shape.invalid:
                yield Record(value=rng.choice(INVALID_MESSAGES), key=b"invalid")
