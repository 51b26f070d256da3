"""Deterministic synthetic ingestion streams of realistic shape.

Three kinds of trace, mixed by weight:
- ``agent``: an agent loop of generations and tool calls, as SDK-instrumented agents send them (some generations
  offer tools and call one, in the OpenAI, Anthropic or Vercel AI SDK shape);
- ``dify``: a Dify workflow run, one span per node (start, knowledge retrieval, LLM, code, answer);
- ``ragflow``: a RAGFlow chat turn: embedding of the question, retrieval, rerank, answer generation.
Payload sizes follow a log-normal distribution with a tail of large payloads and some base64 images.
A seeded random source then moves some events ahead of their predecessors, repeats some (producer retries)
and mixes in invalid messages, so every path of the worker is exercised. The same seed gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import orjson

from load import tool_shapes
from load.trace_builder import StreamShape, TraceBuilder
from pipeline.producer import message_key
from pipeline.recordfile import Record

__all__ = ["INVALID_MESSAGES", "StreamShape", "generate_stream"]


def _agent(b: TraceBuilder) -> None:
    question = b.text(15)
    b.add(
        "trace-create",
        {
            "id": b.trace_id,
            "name": b.rng.choice(("chat", "support-agent")),
            "userId": f"user-{b.rng.randint(1, 300)}",
            "sessionId": f"session-{b.rng.randint(1, 500)}",
            "tags": b.rng.sample(("prod", "beta", "eu", "web"), 2),
            "metadata": {"tenant": f"t{b.rng.randint(1, 20)}", "request": {"region": "eu-west-1"}},
            "input": {"question": question},
            "environment": b.rng.choice(("production", "staging")),
        },
        0,
    )
    retrieval = f"{b.trace_id}-retrieve"
    b.observation(
        "span",
        {"id": retrieval, "name": "retrieve", "input": {"query": question}},
        {"output": {"documents": [b.text(40) for _ in range(3)]}},
        40,
    )
    messages = [{"role": "system", "content": "You are helpful."}, b.user_message(question)]
    for step in range(b.rng.randint(1, 4)):
        generation = f"{b.trace_id}-gen{step}"
        style = b.rng.choice(tool_shapes.STYLES) if b.rng.random() < b.shape.tools else None
        b.generation(generation, f"llm-step-{step}", retrieval, messages, style)
        if b.rng.random() < 0.5:
            b.add(
                "tool-create",
                {
                    "id": f"{b.trace_id}-tool{step}",
                    "traceId": b.trace_id,
                    "parentObservationId": generation,
                    "name": "lookup_order",
                    "input": {"order": b.rng.randint(1000, 9999)},
                    "output": {"status": "shipped"},
                },
                10,
            )
    b.add("trace-create", {"id": b.trace_id, "output": {"answer": b.text(20)}, "tags": ["answered"]})
    b.scores()


def _dify(b: TraceBuilder) -> None:
    query = b.text(12)
    b.add(
        "trace-create",
        {
            "id": b.trace_id,
            "name": "workflow",
            "userId": f"end-user-{b.rng.randint(1, 900)}",
            "sessionId": f"conversation-{b.rng.randint(1, 400)}",
            "tags": ["dify", "workflow"],
            "metadata": {"app_id": f"app-{b.rng.randint(1, 5)}", "workflow_run_id": b.trace_id},
            "input": {"sys.query": query},
        },
        0,
    )
    for node in ("start", "knowledge-retrieval", "llm", "code", "answer"):
        node_id = f"{b.trace_id}-{node}"
        if node == "llm":
            b.generation(node_id, "LLM", None, [{"role": "user", "content": query}])
        elif node == "knowledge-retrieval":
            b.add(
                "retriever-create",
                {
                    "id": node_id,
                    "traceId": b.trace_id,
                    "name": node,
                    "input": {"query": query},
                    "output": {"result": [{"content": b.text(60)} for _ in range(3)]},
                },
            )
        else:
            b.observation(
                "span",
                {"id": node_id, "name": node, "metadata": {"node_type": node}},
                {"output": {"text": b.text(10)}},
                b.rng.randint(1, 50),
            )
    b.add("trace-create", {"id": b.trace_id, "output": {"answer": b.text(30)}})
    b.scores()


def _ragflow(b: TraceBuilder) -> None:
    question = b.text(12)
    b.add(
        "trace-create",
        {
            "id": b.trace_id,
            "name": "ragflow-chat",
            "userId": f"user-{b.rng.randint(1, 300)}",
            "tags": ["ragflow"],
            "metadata": {"dialog_id": f"dialog-{b.rng.randint(1, 30)}"},
            "input": {"question": question},
        },
        0,
    )
    b.add(
        "embedding-create",
        {
            "id": f"{b.trace_id}-embed",
            "traceId": b.trace_id,
            "name": "embed-question",
            "model": "text-embedding-3-small",
            "input": question,
            "usageDetails": {"input": b.rng.randint(5, 60)},
        },
    )
    b.add(
        "retriever-create",
        {
            "id": f"{b.trace_id}-search",
            "traceId": b.trace_id,
            "name": "retrieval",
            "input": {"question": question, "top_k": 8},
            "output": {"chunks": [b.text(80) for _ in range(4)]},
        },
        30,
    )
    b.observation(
        "span", {"id": f"{b.trace_id}-rerank", "name": "rerank", "input": {"chunks": 8}}, {"output": {"kept": 4}}, 60
    )
    b.generation(
        f"{b.trace_id}-answer",
        "chat",
        None,
        [{"role": "system", "content": "Answer from the knowledge base."}, b.user_message(question)],
    )
    b.scores()


SCENARIOS = {"agent": _agent, "dify": _dify, "ragflow": _ragflow}


def parse_mix(mix: str) -> dict[str, float]:
    """``agent=2,dify=1`` to weights by trace kind; ValueError for an unknown kind or a bad weight."""
    weights = {name.strip(): float(weight) for name, _, weight in (part.partition("=") for part in mix.split(","))}
    if unknown := set(weights) - set(SCENARIOS):
        raise ValueError(f"unknown trace kinds {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
    return weights


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
    kinds, weights = zip(*shape.mix.items(), strict=True)
    for trace_no in range(shape.traces):
        project = projects[min(int(rng.expovariate(shape.project_skew)), len(projects) - 1)]
        builder = TraceBuilder(
            rng, shape, project, f"trace-{project}-{trace_no:06d}", shape.start + timedelta(seconds=trace_no * 0.5)
        )
        SCENARIOS[rng.choices(kinds, weights)[0]](builder)
        events = builder.events
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
