"""The building blocks of generated traces: the stream's shape and a builder that collects one trace's events
with a moving clock (payload sizes, images, usage forms, tool-calling generations)."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from load import tool_shapes

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
    tools: float = 0.3  # share of agent generations that offer tools and call one
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

    def generation(
        self, gen_id: str, name: str, parent: str | None, messages: list[dict[str, Any]], tool_style: str | None = None
    ) -> None:
        """A chat generation; with ``tool_style``, one offered the tools (in that SDK's shape) that calls one."""
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
        output: dict[str, Any] = {"role": "assistant", "content": self.text(40)}
        if tool_style:
            body["input"], metadata = tool_shapes.request(tool_style, body["input"])
            if metadata:
                body["metadata"] = metadata
            output = tool_shapes.response(tool_style, self.rng, f"call-{gen_id}", self.text(5))
        duration = self.rng.randint(200, 3000)
        end = {
            "output": output,
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
