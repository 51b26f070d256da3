"""Deterministic synthetic ingestion streams of realistic shape.

Three kinds of trace, mixed by weight:
- ``agent``: an agent loop of generations and tool calls, as SDK-instrumented agents send them;
- ``dify``: a Dify workflow run, one span per node (start, knowledge retrieval, LLM, code, answer);
- ``ragflow``: a RAGFlow chat turn: embedding of the question, retrieval, rerank, answer generation.
Payload sizes follow a log-normal distribution with a tail of large payloads and some base64 images.
A seeded random source then moves some events ahead of their predecessors, repeats some (producer retries)
and mixes in invalid messages, so every path of the worker is exercised. The same seed gives the same bytes.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.producer import message_key
from pipeline.recordfile import Record

CHAT_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-20241022", "gemini-2.0-flash", "my-finetune-v2")
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
    "with",
    "citations",
    "from",
    "the",
    "knowledge",
    "base",
    "while",
    "the",
    "agent",
    "called",
    "tools",
    "to",
    "look",
    "up",
    "orders",
    "accounts",
    "and",
    "tickets",
]


@dataclass(frozen=True)
class StreamShape:
    traces: int = 1200
    projects: int = 3
    project_skew: float = 1.2  # exponential rate: higher puts more traffic on the first projects
    mix: dict[str, float] = field(default_factory=lambda: {"agent": 1.0})
    separate_updates: float = 1.0  # share of observations whose end arrives as a separate update event
    out_of_order: float = 0.05
    duplicates: float = 0.01
    invalid: float = 0.005
    extra_scores: float = 0.3
    large_payloads: float = 0.0  # share of generations with a 100-400 KB input
    media: float = 0.0  # share of user messages carrying a base64 image
    seed: int = 7
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TraceBuilder:
    """Collects one trace's events with a moving clock."""

    def __init__(self, rng: random.Random, shape: StreamShape, project: str, trace_id: str, start: datetime):
        self.rng = rng
        self.shape = shape
        self.project = project
        self.trace_id = trace_id
        self.clock = start
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, body: dict[str, Any], step_ms: int = 5) -> None:
        self.clock += timedelta(milliseconds=step_ms)
        self.events.append(
            {
                "id": f"{self.trace_id}-ev{len(self.events):03d}",
                "timestamp": _iso(self.clock),
                "type": kind,
                "project_id": self.project,
                "body": body,
            }
        )

    def text(self, mean_words: float = 30) -> str:
        words = max(1, int(self.rng.lognormvariate(0, 0.8) * mean_words))
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def user_message(self, question: str) -> dict[str, Any]:
        if self.rng.random() < self.shape.media:
            pixels = self.rng.randbytes(self.rng.randint(20_000, 60_000))
            image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + pixels).decode()
            return {
                "role": "user",
                "content": [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image}}],
            }
        return {"role": "user", "content": question}

    def observation(self, kind: str, body: dict[str, Any], end: dict[str, Any], duration_ms: int) -> None:
        """A create, then its end as an update event (or everything in the create)."""
        base = {"traceId": self.trace_id, **body}
        if self.rng.random() < self.shape.separate_updates and kind in ("span", "generation"):
            self.add(f"{kind}-create", base)
            self.add(
                f"{kind}-update",
                {"id": body["id"], **end, "endTime": _iso(self.clock + timedelta(milliseconds=duration_ms))},
                duration_ms,
            )
        else:
            self.add(
                f"{kind}-create", {**base, **end, "endTime": _iso(self.clock + timedelta(milliseconds=duration_ms))}
            )

    def usage(self, prompt: int | None = None) -> dict[str, Any]:
        prompt = prompt or self.rng.randint(50, 4000)
        completion = self.rng.randint(5, 800)
        form = self.rng.random()
        if form < 0.5:
            return {"usage": {"input": prompt, "output": completion}}
        if form < 0.8:
            cached = self.rng.randint(0, prompt // 2)
            return {
                "usageDetails": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "prompt_tokens_details": {"cached_tokens": cached},
                }
            }
        return {
            "usageDetails": {"input": prompt, "output": completion, "output_reasoning_tokens": self.rng.randint(0, 200)}
        }

    def generation(self, gen_id: str, name: str, parent: str | None, messages: list[dict[str, Any]]) -> None:
        body: dict[str, Any] = {
            "id": gen_id,
            "name": name,
            "model": self.rng.choice(CHAT_MODELS),
            "modelParameters": {"temperature": 0.2, "max_tokens": 512},
            "input": messages,
        }
        if parent:
            body["parentObservationId"] = parent
        if self.rng.random() < self.shape.large_payloads:
            body["input"] = [*messages, {"role": "user", "content": "x" * self.rng.randint(100_000, 400_000)}]
        duration = self.rng.randint(200, 3000)
        end = {
            "output": {"role": "assistant", "content": self.text(40)},
            "completionStartTime": _iso(self.clock + timedelta(milliseconds=150)),
            **self.usage(),
        }
        self.observation("generation", body, end, duration)

    def scores(self) -> None:
        self.add(
            "score-create",
            {
                "id": f"{self.trace_id}-quality",
                "traceId": self.trace_id,
                "name": "quality",
                "value": round(self.rng.random(), 3),
            },
            50,
        )
        if self.rng.random() < self.shape.extra_scores:
            self.add(
                "score-create",
                {
                    "id": f"{self.trace_id}-helpful",
                    "traceId": self.trace_id,
                    "name": "helpful",
                    "value": self.rng.choice((0, 1)),
                    "dataType": "BOOLEAN",
                    "comment": "user feedback",
                },
                900,
            )
        if self.rng.random() < self.shape.extra_scores * 0.7:
            self.add(
                "score-create",
                {
                    "id": f"{self.trace_id}-topic",
                    "traceId": self.trace_id,
                    "name": "topic",
                    "value": self.rng.choice(("billing", "shipping", "other")),
                },
                20,
            )


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
        b.generation(generation, f"llm-step-{step}", retrieval, messages)
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
