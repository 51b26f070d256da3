"""Langfuse Python SDK 2.x, run in its own virtualenv against the gateway: a nested trace with a priced
generation and an uploaded image, scores of the three v2 data types, then a Dify-shaped run (era 1: a trace,
a workflow span, node spans and generations with legacy usage, CHARACTERS included, all ended up front).
Prints what it created as JSON."""

import json
import os
import sys
from datetime import UTC, datetime, timedelta

from langfuse import Langfuse
from langfuse.media import LangfuseMedia

run = os.environ["RUN_ID"]
image = bytes.fromhex(os.environ["IMAGE_HEX"])
langfuse = Langfuse(flush_at=15, flush_interval=0.2)
assert langfuse.auth_check()

trace_id = f"v2-{run}"
trace = langfuse.trace(
    id=trace_id,
    name="v2 chat",
    user_id="user-7",
    session_id=f"session-{run}",
    tags=["sdk-v2"],
    release="r1",
    input={"question": "what is in the picture?"},
    metadata={"team": "search"},
)
span = trace.span(id=f"{trace_id}-retrieve", name="retrieve", input={"q": "picture"}, output={"docs": 2})
generation = span.generation(
    id=f"{trace_id}-llm",
    name="answer",
    model="gpt-4o",
    input=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe"},
                {"type": "image", "image": LangfuseMedia(content_bytes=image, content_type="image/png")},
            ],
        }
    ],
    usage={"input": 1000, "output": 200, "unit": "TOKENS"},
)
generation.end(output={"role": "assistant", "content": "a red square"})
span.end()
trace.update(output={"answer": "a red square"})
trace.score(id=f"{trace_id}-s-num", name="quality", value=0.75, data_type="NUMERIC", comment="ok")
trace.score(id=f"{trace_id}-s-cat", name="tone", value="friendly", data_type="CATEGORICAL")
generation.score(id=f"{trace_id}-s-bool", name="grounded", value=1, data_type="BOOLEAN")

# Dify before 2026 (langfuse 2.51): built after the run from stored data, with start and end known.
dify_trace = f"dify-{run}"
start = datetime.now(UTC) - timedelta(seconds=30)
langfuse.trace(
    id=dify_trace,
    name="workflow",
    user_id="end-user-1",
    input={"query": "hi"},
    output={"answer": "hello"},
    metadata={"app_id": "app-1"},
    tags=["workflow"],
)
langfuse.span(
    id=f"{dify_trace}-wf",
    trace_id=dify_trace,
    name="workflow",
    start_time=start,
    end_time=start + timedelta(seconds=9),
    input={"query": "hi"},
    output={"answer": "hello"},
)
for index, node in enumerate(("start", "knowledge-retrieval", "end")):
    langfuse.span(
        id=f"{dify_trace}-node-{index}",
        trace_id=dify_trace,
        parent_observation_id=f"{dify_trace}-wf",
        name=node,
        start_time=start + timedelta(seconds=index),
        end_time=start + timedelta(seconds=index + 1),
        level="ERROR" if node == "end" else "DEFAULT",
        status_message="node failed" if node == "end" else None,
    )
langfuse.generation(
    id=f"{dify_trace}-llm",
    trace_id=dify_trace,
    parent_observation_id=f"{dify_trace}-wf",
    name="llm",
    model="gpt-4o-mini",
    start_time=start + timedelta(seconds=3),
    end_time=start + timedelta(seconds=6),
    input=[{"role": "user", "content": "hi"}],
    output=[{"role": "assistant", "content": "hello"}],
    usage={"input": 120, "output": 30, "total": 150, "unit": "TOKENS", "totalCost": 0.0009},
)
langfuse.generation(
    id=f"{dify_trace}-suggest",
    trace_id=dify_trace,
    name="suggested_question",
    model="gpt-4o-mini",
    start_time=start + timedelta(seconds=7),
    end_time=start + timedelta(seconds=8),
    input="hi",
    output='["more?"]',
    usage={"input": 40, "output": 12, "total": 52, "unit": "CHARACTERS"},
)
langfuse.flush()
json.dump({"trace": trace_id, "dify_trace": dify_trace}, sys.stdout)
