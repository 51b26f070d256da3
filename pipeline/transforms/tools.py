"""Tool definitions and tool calls of an observation, as Langfuse v3 extracts them (``extractToolsBackend``).

Run on the merged state when its row is built, for every observation type:

- **definitions** come from the input: a top-level ``tools`` array, ``tools`` on messages, and LangGraph tool
  messages (``role: tool`` whose content is a function). Definitions that SDKs put in metadata (``tools``, and
  under ``attributes``: Vercel AI SDK ``ai.prompt.tools``, OTel ``gen_ai.tool.definitions``, pydantic-ai
  ``model_request_parameters.function_tools``, OpenInference ``llm.tools.N.tool.json_schema``) are first moved
  into the input and removed from the stored metadata;
- **calls** come from the output: ``tool_calls``/``toolCalls``, ``choices[].message.tool_calls``, Anthropic
  ``tool_use`` and AI SDK ``tool-call`` content parts, LangChain ``additional_kwargs.tool_calls``, and bare
  call objects or arrays (OpenAI Responses ``function_call``, AI SDK calls).

Each definition becomes ``name -> {"description", "parameters"}`` (parameters as a JSON string), first name wins;
each call ``{"id", "arguments", "type", "index"}`` with its name in ``tool_call_names``, deduplicated by id (or
name and arguments), first wins. One deliberate difference: Langfuse keeps the tool columns of an earlier batch
when a later batch extracts nothing; here they always follow the merged input and output, so that any order and
batching of events gives the same row.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from pipeline.transforms.fields import js_truthy
from pipeline.transforms.normalize import stringify

ATTRIBUTE_TOOLS = re.compile(
    r'"(?:ai\.prompt\.tools|gen_ai\.tool\.definitions|model_request_parameters|llm\.tools\.\d+\.tool\.json_schema)"\s*:'
)
OPENINFERENCE_TOOL = re.compile(r"^llm\.tools\.(\d+)\.tool\.json_schema$")
CALL_TYPES = frozenset({"function", "function_call", "tool-call", "tool_use"})
MESSAGE_KEYS = ("role", "content", "tool_calls", "additional_kwargs")
NOT_MAPPED = object()


class ToolColumns(msgspec.Struct, frozen=True, gc=False):
    input: str | None  # the stored input: with definitions moved in from metadata, when there were any
    metadata: dict[str, str]  # the stored metadata, without them
    definitions: dict[str, str] = msgspec.field(default_factory=dict)
    calls: list[str] = msgspec.field(default_factory=list)
    call_names: list[str] = msgspec.field(default_factory=list)


def parse_if_string(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)`` for the values a name can have."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float) else stringify(value)


def _first(*values: Any) -> Any:
    """JavaScript's ``a ?? b ?? c``."""
    return next((value for value in values if value is not None), None)


def flatten_definition(tool: Any) -> tuple[Any, Any, Any]:
    """(name, description, parameters) of a definition in any supported shape; all None when it has none."""
    tool = parse_if_string(tool)
    if not isinstance(tool, dict):
        return None, None, None
    data = _first(tool.get("function"), tool)
    if not isinstance(data, dict):
        return None, None, None
    return (
        data.get("name"),
        _first(data.get("description"), data.get("desc")),
        _first(data.get("parameters"), data.get("parameters_json_schema"), data.get("inputSchema")),
    )


def tool_columns(input_text: str | None, output_text: str | None, metadata: dict[str, str]) -> ToolColumns:
    """The stored input and metadata and the tool columns of a merged observation."""
    if not _mentions_tools(input_text, output_text, metadata):
        return ToolColumns(input_text, metadata)
    moved_input, cleaned = move_metadata_tools(input_text, metadata)
    stored_input = input_text if moved_input is None else orjson.dumps(moved_input).decode()
    try:
        definitions = extract_definitions(moved_input if moved_input is not None else input_text)
        calls = extract_calls(output_text)
    except Exception:  # malformed shapes never fail the row: no tool columns, like Langfuse
        definitions, calls = {}, []
    return ToolColumns(
        stored_input,
        cleaned if moved_input is not None else metadata,
        definitions,
        [call for call, _ in calls],
        [name for _, name in calls],
    )


def _mentions_tools(input_text: str | None, output_text: str | None, metadata: dict[str, str]) -> bool:
    """A cheap test before any parsing: every definition shape has a key or value that starts with "tool (tools,
    role tool) and every call shape one that starts with "tool, "arguments or "call_id; definitions in metadata
    sit under its tools or attributes keys. An escape (\\u) could hide any of them."""
    text_in, text_out = input_text or "", output_text or ""
    return (
        '"tool' in text_in
        or '"tool' in text_out
        or '"arguments' in text_out
        or '"call_id' in text_out
        or "\\u" in text_in
        or "\\u" in text_out
        or "tools" in metadata
        or "tool" in metadata.get("attributes", "")
    )


def extract_definitions(input_value: Any) -> dict[str, str]:
    value = parse_if_string(input_value)
    if not isinstance(value, dict | list):
        return {}
    found: dict[str, str] = {}
    document = {"messages": value} if isinstance(value, list) else value
    tools = document.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        _add_definition(found, tool)
    messages = document.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("tools"), list):
            for tool in message["tools"]:
                _add_definition(found, tool)
        content = message.get("content")
        if (
            message.get("role") == "tool"
            and isinstance(content, dict)
            and content.get("type") == "function"
            and js_truthy(content.get("function"))
        ):
            _add_definition(found, content)
    return found


def _add_definition(found: dict[str, str], tool: Any) -> None:
    name, description, parameters = flatten_definition(tool)
    if not js_truthy(name) or js_string(name) in found:
        return
    shown = orjson.dumps(parameters).decode() if js_truthy(parameters) else ""
    found[js_string(name)] = orjson.dumps({"description": _first(description, ""), "parameters": shown}).decode()


def tool_array(value: Any, require_every: bool, allow_provider: bool) -> list[Any] | None:
    """Definitions in a list (or a JSON string of one), items parsed; None when it is not such a list."""
    value = parse_if_string(value)
    if not isinstance(value, list):
        return None
    if not value:
        return []
    items = [parse_if_string(item) for item in value]

    def tool_like(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        return js_truthy(flatten_definition(item)[0]) or (allow_provider and isinstance(item.get("type"), str))

    if require_every and not all(tool_like(item) for item in items):
        return None
    return [item for item in items if tool_like(item)] or None


def _dedupe(tools: list[Any]) -> list[Any]:
    names: set[str] = set()
    kept = []
    for tool in tools:
        name = flatten_definition(tool)[0]
        if js_truthy(name):
            if js_string(name) in names:
                continue
            names.add(js_string(name))
        kept.append(tool)
    return kept


def move_metadata_tools(input_text: str | None, metadata: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """The input with the definitions found in metadata appended, and the metadata without them; (None, metadata)
    when there are none, or the input cannot take them."""
    cleaned: dict[str, Any] = dict(metadata)
    tools: list[Any] = []
    top = tool_array(metadata.get("tools"), require_every=True, allow_provider=False)
    if top:
        tools += top
        del cleaned["tools"]
    attributes = _attributes(metadata.get("attributes"))
    if attributes is not None:
        remaining = _take_attribute_tools(attributes, tools)
        if remaining:
            cleaned["attributes"] = remaining
        else:
            cleaned.pop("attributes", None)
    tools = _dedupe(tools)
    if not tools:
        return None, metadata
    moved = append_tools(input_text, tools)
    if moved is NOT_MAPPED:
        return None, metadata
    return moved, {key: stringify(value) for key, value in cleaned.items()}


def _attributes(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        if not ATTRIBUTE_TOOLS.search(value):
            return None
        value = parse_if_string(value)
    return value if isinstance(value, dict) else None


def _take_attribute_tools(attributes: dict[str, Any], tools: list[Any]) -> dict[str, Any]:
    """Move tool definitions out of OTel-style attributes into ``tools``; returns what remains."""
    remaining = dict(attributes)
    for key, allow_provider in (("ai.prompt.tools", True), ("gen_ai.tool.definitions", False)):
        found = tool_array(remaining.get(key), require_every=True, allow_provider=allow_provider)
        if found is not None:
            tools += found
            del remaining[key]
    if "model_request_parameters" in remaining:
        original = remaining["model_request_parameters"]
        parameters = parse_if_string(original)
        if isinstance(parameters, dict):
            rest = dict(parameters)
            found = tool_array(rest.get("function_tools"), require_every=True, allow_provider=False)
            if found is not None:
                tools += found
                del rest["function_tools"]
            if rest:
                remaining["model_request_parameters"] = stringify(rest) if isinstance(original, str) else rest
            else:
                del remaining["model_request_parameters"]
    indexed = sorted((int(m.group(1)), key) for key in remaining if (m := OPENINFERENCE_TOOL.match(key)))
    for _, key in indexed:
        tool = parse_if_string(remaining[key])
        if isinstance(tool, dict) and js_truthy(flatten_definition(tool)[0]):
            tools.append(tool)
            del remaining[key]
    return remaining


def append_tools(input_text: str | None, tools: list[Any]) -> Any:
    """The input as an object that carries ``tools``, or NOT_MAPPED when it cannot (a number, say)."""
    if input_text is None:
        return {"tools": tools}
    try:
        parsed = orjson.loads(input_text)
    except orjson.JSONDecodeError:
        return {"prompt": input_text, "tools": tools}
    if isinstance(parsed, list):
        return {"messages": parsed, "tools": tools}
    if isinstance(parsed, dict):
        if parsed.get("tools") is None:
            return {**parsed, "tools": tools}
        existing = tool_array(parsed["tools"], require_every=False, allow_provider=True)
        return NOT_MAPPED if existing is None else {**parsed, "tools": _dedupe(existing + tools)}
    if parsed is None:
        return {"tools": tools}
    return {"prompt": parsed, "tools": tools} if isinstance(parsed, str) else NOT_MAPPED


def is_call_like(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("type") == "tool-result":
        return False
    function = value.get("function")
    name = value.get("name")
    return (
        (isinstance(function, dict) and js_truthy(function.get("name")) and "arguments" in function)
        or (
            js_truthy(value.get("toolName"))
            and (value.get("type") == "tool-call" or "input" in value or "args" in value)
        )
        or (js_truthy(value.get("call_id")) and js_truthy(name) and "arguments" in value)
        or (value.get("type") == "tool_use" and js_truthy(name) and "input" in value)
        or (
            js_truthy(name)
            and "arguments" in value
            and ("id" in value or "index" in value or js_string(value.get("type")) in CALL_TYPES)
        )
    )


def _is_message_like(value: dict[str, Any]) -> bool:
    return any(key in value for key in MESSAGE_KEYS)


def _array(value: Any) -> list[Any] | None:
    value = parse_if_string(value)
    return value if isinstance(value, list) else None


def extract_calls(output_value: Any) -> list[tuple[str, str]]:
    """(stored call JSON, name) of every call in the output, deduplicated, in order."""
    output = parse_if_string(output_value)
    calls: list[tuple[Any, Any, str, Any, Any]] = []
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict):
                if is_call_like(item) and not _is_message_like(item):
                    _add_call(calls, item)
                else:
                    _calls_of_message(calls, item)
    elif isinstance(output, dict):
        if is_call_like(output) and not _is_message_like(output):
            _add_call(calls, output)
        else:
            _message_calls(calls, output)
            choices = output.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                message = choice.get("message") if isinstance(choice, dict) else None
                if isinstance(message, dict):
                    _message_calls(calls, message)
            _content_calls(calls, output)
            extra = output.get("additional_kwargs")
            for call in (_array(extra.get("tool_calls")) if isinstance(extra, dict) else None) or ():
                _add_call(calls, call)
    return _dedupe_calls(calls)


def _calls_of_message(calls: list[Any], message: dict[str, Any]) -> None:
    """A message inside an output array: its tool calls, then its content parts (not choices)."""
    _message_calls(calls, message)
    _content_calls(calls, message)


def _message_calls(calls: list[Any], message: dict[str, Any]) -> None:
    for call in _first(_array(message.get("tool_calls")), _array(message.get("toolCalls"))) or ():
        _add_call(calls, call)


def _content_calls(calls: list[Any], message: dict[str, Any]) -> None:
    content = message.get("content")
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "tool_use" and js_truthy(part.get("name")):
            arguments = orjson.dumps(_first(part.get("input"), {})).decode()
            calls.append((part.get("id"), part.get("name"), arguments, "tool_use", None))
        elif part.get("type") == "tool-call":
            _add_call(calls, part)


def _add_call(calls: list[Any], call: Any) -> None:
    if not isinstance(call, dict):
        return
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = _first(function.get("name"), call.get("name"), call.get("toolName"))
    if not js_truthy(name):
        return
    raw = _first(function.get("arguments"), call.get("arguments"), call.get("args"), call.get("input"))
    arguments = raw if isinstance(raw, str) else orjson.dumps(_first(raw, {})).decode()
    call_id = _first(call.get("call_id"), call.get("id"), call.get("toolCallId"))
    kind = _first(call.get("type"), "function" if js_truthy(call.get("function")) else None)
    calls.append((call_id, name, arguments, kind, call.get("index")))


def _dedupe_calls(calls: list[tuple[Any, Any, str, Any, Any]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for call_id, name, arguments, kind, index in calls:
        key = js_string(call_id) if js_truthy(call_id) else f"{js_string(name)}-{arguments}"
        if key in seen:
            continue
        seen.add(key)
        stored = {
            "id": _first(call_id, ""),
            "arguments": arguments,
            "type": _first(kind, ""),
            "index": _first(index, 0),
        }
        out.append((orjson.dumps(stored).decode(), js_string(name)))
    return out
