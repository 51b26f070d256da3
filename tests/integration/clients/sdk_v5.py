"""Langfuse Python SDK 5.x (OpenTelemetry export), run in its own virtualenv against the gateway: a trace with
a nested generation carrying usage, cost and an uploaded image; scores of every data type (sent to
/api/public/scores); then a RAGFlow-shaped run (0.25+): a new client and auth_check before every request, a
generation per LLM call with usage_details={"total_tokens": N}, never flushed by the app itself.
Prints what it created as JSON."""

import json
import os
import sys

from langfuse import Langfuse, propagate_attributes
from langfuse.media import LangfuseMedia

image = bytes.fromhex(os.environ["IMAGE_HEX"])
langfuse = Langfuse()
assert langfuse.auth_check()

with langfuse.start_as_current_observation(as_type="span", name="v5 agent", input={"task": "look"}) as root:
    with propagate_attributes(
        user_id="user-5", session_id="session-v5", tags=["sdk-v5"], trace_name="v5 trace", metadata={"team": "vision"}
    ):
        with langfuse.start_as_current_observation(
            as_type="generation",
            name="vision call",
            model="gpt-4o",
            input={"image": LangfuseMedia(content_bytes=image, content_type="image/png"), "prompt": "describe"},
            usage_details={"input": 1000, "output": 100},
            cost_details={"total": 0.5},
        ) as generation:
            generation.update(output="a red square")
        root.update(output={"done": True})
    trace_id = root.trace_id
    generation_id = generation.id
langfuse.create_score(name="accuracy", value=0.9, trace_id=trace_id, data_type="NUMERIC", score_id=f"{trace_id}-num")
langfuse.create_score(
    name="helpful",
    value=1,
    trace_id=trace_id,
    observation_id=generation_id,
    data_type="BOOLEAN",
    score_id=f"{trace_id}-bool",
)
langfuse.create_score(
    name="tone", value="neutral", trace_id=trace_id, data_type="CATEGORICAL", score_id=f"{trace_id}-cat"
)
langfuse.create_score(
    name="review", value="reads well", trace_id=trace_id, data_type="TEXT", score_id=f"{trace_id}-text"
)
langfuse.flush()

ragflow = []
for turn, tokens in enumerate((321, 45)):
    client = Langfuse(
        public_key=os.environ["LANGFUSE_PUBLIC_KEY"],
        secret_key=os.environ["LANGFUSE_SECRET_KEY"],
        host=os.environ["LANGFUSE_HOST"],
    )
    assert client.auth_check()
    with propagate_attributes(session_id="ragflow-chat"):
        observation = client.start_observation(
            as_type="generation", name=("chat", "encode")[turn], model="qwen-plus", input={"question": f"turn {turn}"}
        )
        observation.update(output="answer", usage_details={"total_tokens": tokens})
        observation.end()
    ragflow.append({"trace": observation.trace_id, "id": observation.id, "tokens": tokens})
langfuse.shutdown()  # RAGFlow never flushes; the process's exit (atexit) does what its background export would
json.dump({"trace": trace_id, "generation": generation_id, "ragflow": ragflow}, sys.stdout)
