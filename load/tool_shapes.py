"""How SDKs send tool-calling generations, for the generated streams: the request's tool definitions and the
response's tool calls, in the OpenAI, Anthropic and Vercel AI SDK shapes Langfuse extracts tools from."""

from __future__ import annotations

import json
import random
from typing import Any

TOOLS = (
    ("lookup_order", "Look up an order by its number.", {"order": {"type": "integer"}}),
    ("refund", "Refund an order.", {"order": {"type": "integer"}, "reason": {"type": "string"}}),
    ("search_kb", "Search the knowledge base.", {"query": {"type": "string"}}),
)
STYLES = ("openai", "anthropic", "ai-sdk")


def _schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": sorted(properties)}


def request(style: str, messages: list[dict[str, Any]]) -> tuple[Any, dict[str, Any] | None]:
    """(input, metadata) of a generation offered every tool: OpenAI and Anthropic put the definitions in the
    request; the AI SDK's OTel export puts them in ``metadata.attributes["ai.prompt.tools"]`` as JSON strings."""
    if style == "openai":
        tools = [
            {"type": "function", "function": {"name": n, "description": d, "parameters": _schema(p)}}
            for n, d, p in TOOLS
        ]
        return {"messages": messages, "tools": tools}, None
    if style == "anthropic":
        return {
            "messages": messages,
            "tools": [{"name": n, "description": d, "input_schema": _schema(p)} for n, d, p in TOOLS],
        }, None
    definitions = [
        json.dumps({"type": "function", "name": n, "description": d, "inputSchema": _schema(p)}) for n, d, p in TOOLS
    ]
    return messages, {"attributes": {"ai.prompt.tools": definitions, "operation.name": "ai.generateText"}}


def response(style: str, rng: random.Random, call_id: str, text: str) -> dict[str, Any]:
    """The assistant's answer calling one tool."""
    name, _, properties = rng.choice(TOOLS)
    arguments = {
        key: rng.randint(1000, 9999) if spec["type"] == "integer" else text for key, spec in properties.items()
    }
    if style == "openai":
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if style == "anthropic":
        use = {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
        return {"role": "assistant", "content": [{"type": "text", "text": text}, use]}
    call = {"type": "tool-call", "toolCallId": call_id, "toolName": name, "input": arguments}
    return {"role": "assistant", "content": "", "tool_calls": [call]}
