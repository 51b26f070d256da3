"""Span attributes → Langfuse fields: the attribute tables of Langfuse's OTel span conversion (study §4.3).

Each function reads one ``SpanView`` and returns one field, or None when no source applies; sources are tried in
Langfuse's priority order. Value rules:
* JSON-encoded values (the Langfuse SDK encodes input, output, usage, cost, model parameters, completion start and
  non-string metadata) are decoded when they parse as JSON, other strings stay strings; JSON nested deeper than
  ``MAX_JSON_DEPTH`` stays text (the validator refuses more than 200 levels).
* String fields (user, session, release, version, model, names) take strings, numbers and booleans as text;
  counts must be integers (decimal strings are parsed).
* Flattened attributes (``gen_ai.prompt.0.role``) are rebuilt into arrays (at most ``MAX_ARRAY_SLOTS`` slots,
  holes null) and objects; keys with more than ``MAX_PATH_SEGMENTS`` segments are skipped.
* Input and output are found independently, each from the first source that has it, in Langfuse's framework
  order; the keys used leave the ``attributes`` metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.transforms.normalize import stringify
from pipeline.transforms.validate import EARLIEST_MS, EPOCH, LATEST_MS, iso_utc, nesting


def _words(text: str) -> tuple[str, ...]:
    """A key table written as one string: the tables below stay readable at a glance."""
    return tuple(text.split())


MAX_JSON_DEPTH = 64
MAX_ARRAY_SLOTS = 10_001
MAX_PATH_SEGMENTS = 32
INT64 = range(-(2**63), 2**63)  # orjson writes no wider integer
BLOCKED_KEYS = frozenset(_words("__proto__ constructor prototype"))  # Langfuse refuses these metadata keys
LEVELS = frozenset(_words("DEBUG DEFAULT WARNING ERROR"))
OBSERVATION_TYPES = frozenset(_words("span generation event embedding agent tool chain retriever guardrail evaluator"))
OPENINFERENCE_KINDS = {kind: kind for kind in _words("CHAIN RETRIEVER EMBEDDING AGENT TOOL GUARDRAIL EVALUATOR")}
OPENINFERENCE_KINDS["LLM"] = "GENERATION"
GEN_AI_OPERATIONS = dict.fromkeys(_words("chat completion text_completion generate_content generate"), "GENERATION")
GEN_AI_OPERATIONS |= dict(pair.split("=") for pair in _words("embeddings=EMBEDDING execute_tool=TOOL"))
GEN_AI_OPERATIONS |= dict.fromkeys(_words("invoke_agent create_agent"), "AGENT")
AI_SDK_GENERATIONS = frozenset(
    _words("ai.generateText.doGenerate ai.streamText.doStream ai.generateObject.doGenerate ai.streamObject.doStream")
)
MODEL_KEYS = _words(
    "langfuse.observation.model.name gen_ai.response.model ai.model.id gen_ai.request.model llm.response.model"
    " llm.model_name model"
)
# Python SDK <= 3.3 sent generations as type "span" with these attributes (mapper 0).
GENERATION_HINTS = tuple(
    f"langfuse.observation.{k}" for k in _words("model.name model.parameters usage_details cost_details")
)
USER_KEYS = _words(
    "langfuse.user.id user.id langfuse.observation.metadata.langfuse_user_id langfuse.trace.metadata.langfuse_user_id"
    " ai.telemetry.metadata.userId"
)
SESSION_KEYS = _words(
    "langfuse.session.id session.id gen_ai.conversation.id langfuse.observation.metadata.langfuse_session_id"
    " langfuse.trace.metadata.langfuse_session_id ai.telemetry.metadata.sessionId"
)
TAG_KEYS = _words(
    "langfuse.trace.tags langfuse.tags langfuse.observation.metadata.langfuse_tags"
    " langfuse.trace.metadata.langfuse_tags ai.telemetry.metadata.tags tag.tags"
)
AI_SDK_PARAMETERS = {name: f"ai.settings.{name}" for name in _words("maxSteps maxTokens maxRetries mode temperature")}
AI_SDK_PARAMETERS |= {"toolChoice": "ai.prompt.toolChoice", "finishReason": "ai.response.finishReason"}
AI_SDK_PARAMETERS["system"] = "gen_ai.system"
USAGE_ALIASES = {
    "input": _words("prompt_tokens input_tokens prompt"),
    "output": _words("completion_tokens output_tokens completion"),
    "total": _words("total_tokens total"),
    "input_cached_tokens": _words(
        "input_cached_tokens cache_read_input_tokens cache_read.input_tokens cache_read cached_tokens"
        " prompt_details.cache_read"
    ),
    "input_cache_creation": _words(
        "input_cache_creation cache_creation_input_tokens cache_creation.input_tokens cache_creation cache_write"
        " prompt_details.cache_write"
    ),
}
AI_SDK_USAGE = {
    "input": _words("gen_ai.usage.prompt_tokens gen_ai.usage.input_tokens ai.usage.promptTokens ai.usage.inputTokens"),
    "output": _words(
        "gen_ai.usage.completion_tokens gen_ai.usage.output_tokens ai.usage.completionTokens ai.usage.outputTokens"
    ),
    "total": _words("ai.usage.tokens ai.usage.totalTokens"),
    "input_cached_tokens": ("ai.usage.cachedInputTokens",),
    "output_reasoning_tokens": ("ai.usage.reasoningTokens",),
}
# Input and output sources in Langfuse's framework order: Langfuse SDK, Vercel AI SDK, Traceloop, SmolAgents and
# OpenInference values, bare input/output, OpenInference messages (kept nested), OTel GenAI. "key.*" is a flattened
# array or object, "text:key" a value kept as it is; other values are JSON-decoded when they are JSON.
IO_KEYS = (
    _words(
        "langfuse.observation.input ai.prompt.messages ai.prompt ai.toolCall.args traceloop.entity.input"
        " gen_ai.prompt.* input.value input llm.input_messages.* gen_ai.input.messages gen_ai.tool.call.arguments"
    ),
    _words(
        "langfuse.observation.output text:ai.response.text ai.response.toolCalls ai.response.object"
        " ai.toolCall.result traceloop.entity.output gen_ai.completion.* output.value output llm.output_messages.*"
        " gen_ai.output.messages gen_ai.tool.call.result"
    ),
)
_DIGITS = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class SpanView:
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    start_ms: int = 0


def parse_json(value: Any) -> Any:
    """A JSON-encoded string decoded; plain text, too-deep JSON and non-strings unchanged."""
    if not isinstance(value, str):
        return value
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return value if nesting(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH else parsed


def first(attributes: dict[str, Any], *keys: str) -> Any:
    """The first non-null value under ``keys``."""
    return next((attributes[key] for key in keys if attributes.get(key) is not None), None)


def as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value) if isinstance(value, int | float) else None


def as_count(value: Any) -> int | None:
    """An integer count from an int, an integral float or a decimal string; None otherwise."""
    integral = isinstance(value, float) and value.is_integer()
    if integral or (isinstance(value, str) and _DIGITS.fullmatch(value.strip())):
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value in INT64 else None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value if isinstance(value, bool) else None


def iso_ms(ms: int) -> str | None:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None outside what the validator accepts (1900..2299)."""
    return iso_utc(ms) if EARLIEST_MS <= ms <= LATEST_MS else None


def observation_name(span: SpanView, span_name: str) -> str:
    attributes = span.attributes
    name = as_text(first(attributes, "gen_ai.tool.name", "genkit:name", "logfire.msg", "ai.toolCall.name"))
    function_id, operation_id = attributes.get("ai.telemetry.functionId"), attributes.get("ai.operationId")
    if not name and function_id and operation_id and isinstance(function_id, str) and isinstance(operation_id, str):
        name = f"{function_id}:{operation_id}"
    return name or span_name


def environment(span: SpanView) -> str:
    keys = ("langfuse.environment", "deployment.environment.name", "deployment.environment")
    values = (source.get(key) for source in (span.attributes, span.resource) for key in keys)
    return next((value for value in values if isinstance(value, str) and value), "default")


def trace_context(span: SpanView) -> dict[str, Any]:
    """userId, sessionId, tags (an array, a JSON array text or a comma list), public and release (span, then
    resource); None where absent."""
    found = first(span.attributes, *TAG_KEYS)
    if isinstance(found, str):
        parsed = parse_json(found)
        found = parsed if isinstance(parsed, list) else found.split(",")
    texts = [text.strip() for text in map(as_text, found) if text and text.strip()] if isinstance(found, list) else None
    return {
        "userId": as_text(first(span.attributes, *USER_KEYS)),
        "sessionId": as_text(first(span.attributes, *SESSION_KEYS)),
        "tags": texts,
        "public": as_bool(first(span.attributes, "langfuse.trace.public", "langfuse.public")),
        "release": as_text(first(span.attributes, "langfuse.release") or span.resource.get("langfuse.release")),
    }


def version(span: SpanView) -> str | None:
    return as_text(span.attributes.get("langfuse.version")) or as_text(span.resource.get("service.version"))


def level_and_status(span: SpanView, status: dict[str, Any]) -> tuple[str, str | None]:
    """The level (declared, else ERROR for an error status, else DEFAULT) and the status message."""
    declared = span.attributes.get("langfuse.observation.level")
    level = declared.upper() if isinstance(declared, str) and declared.upper() in LEVELS else None
    message = as_text(span.attributes.get("langfuse.observation.status_message")) or status["message"] or None
    return level or ("ERROR" if status["code"] == 2 else "DEFAULT"), message


def prompt(span: SpanView) -> tuple[str, int] | None:
    """Name and version, or None: the validator needs both, with the version an int in 0..65535."""
    attributes = span.attributes
    for prefix in ("langfuse.observation.prompt", "langfuse.prompt"):
        if f"{prefix}.name" in attributes:
            return _prompt(attributes[f"{prefix}.name"], attributes.get(f"{prefix}.version"))
    ai_sdk = parse_json(attributes.get("ai.telemetry.metadata.langfusePrompt"))
    return _prompt(ai_sdk.get("name"), ai_sdk.get("version")) if isinstance(ai_sdk, dict) else None


def _prompt(name: Any, number: Any) -> tuple[str, int] | None:
    text, count = as_text(name), as_count(number)
    return (text, count) if text and count is not None and 0 <= count <= 65535 else None


def observation_type(span: SpanView, span_name: str) -> str:
    """Langfuse's type mappers in order (0, 1, 2, 3, 5, 6, 7, 10); SPAN when none matches."""
    attributes = span.attributes
    declared = attributes.get("langfuse.observation.type")
    declared = declared.lower() if isinstance(declared, str) else None
    old_sdk = span.scope_name.startswith("langfuse-sdk") and re.match(r"(?:[0-2]|3\.[0-3])\.", span.scope_version)
    if declared == "span" and old_sdk and any(key in attributes for key in GENERATION_HINTS):
        return "GENERATION"
    if declared in OBSERVATION_TYPES:
        return declared.upper()
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[kind.upper()]
    operation = attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation.lower() in GEN_AI_OPERATIONS:
        return GEN_AI_OPERATIONS[operation.lower()]
    ai_operation = attributes.get("ai.operationId")
    ai_operation = ai_operation if isinstance(ai_operation, str) and ai_operation else span_name
    if ai_operation in AI_SDK_GENERATIONS and model(span):
        return "GENERATION"
    if ai_operation.startswith("ai.embed"):
        return "EMBEDDING"
    if ai_operation == "ai.toolCall" or "gen_ai.tool.name" in attributes or "gen_ai.tool.call.id" in attributes:
        return "TOOL"
    return "GENERATION" if model(span) else "SPAN"


def model(span: SpanView) -> str | None:
    return as_text(first(span.attributes, *MODEL_KEYS))


def model_parameters(span: SpanView) -> dict[str, Any] | None:
    """Strings and numbers stay; any other value becomes its JSON text (what the validator accepts)."""
    attributes = span.attributes
    found = parse_json(attributes.get("langfuse.observation.model.parameters"))
    if not isinstance(found, dict) and span.scope_name == "ai":
        found = {name: attributes[key] for name, key in AI_SDK_PARAMETERS.items() if key in attributes}
    for key in ("llm.invocation_parameters", "model_config"):
        if not isinstance(found, dict) or not found:
            found = parse_json(attributes.get(key))
    if not isinstance(found, dict) or not found:
        found = {key[15:]: value for key, value in attributes.items() if key.startswith("gen_ai.request.")}
        found.pop("model", None)
    plain = (str, int, float)
    return {
        str(key): value if isinstance(value, plain) and not isinstance(value, bool) else stringify(value)
        for key, value in found.items()
        if key not in BLOCKED_KEYS
    } or None


def completion_start_time(span: SpanView) -> str | None:
    value = span.attributes.get("langfuse.observation.completion_start_time")
    for _ in range(2):  # a JSON string, sometimes JSON-encoded twice
        value = parse_json(value) if isinstance(value, str) and value.startswith('"') else value
    try:  # ISO 8601, truncated to ms; a time without offset is read as UTC
        moment = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        moment = None
    moment = moment and moment.replace(tzinfo=moment.tzinfo or UTC)
    stamp = iso_ms((moment - EPOCH) // timedelta(milliseconds=1)) if moment else None
    first_chunk = first(span.attributes, "ai.response.msToFirstChunk", "ai.stream.msToFirstChunk")
    if not stamp and isinstance(first_chunk, int | float) and not isinstance(first_chunk, bool):
        stamp = iso_ms(span.start_ms + int(first_chunk)) if 0 <= first_chunk < 10**12 else None  # also not NaN
    return stamp


def usage_details(span: SpanView) -> dict[str, Any] | None:
    explicit = parse_json(span.attributes.get("langfuse.observation.usage_details"))
    if isinstance(explicit, dict):
        return explicit
    ai_sdk = _ai_sdk_usage(span.attributes) if span.scope_name == "ai" else None
    return ai_sdk or _generic_usage(span.attributes) or None


def _ai_sdk_usage(attributes: dict[str, Any]) -> dict[str, int]:
    """AI SDK counts, with cached tokens taken out of input and reasoning tokens out of output."""
    found = ((name, as_count(first(attributes, *keys))) for name, keys in AI_SDK_USAGE.items())
    counts = {name: count for name, count in found if count is not None}
    if "input" in counts:
        counts["input"] -= counts.get("input_cached_tokens", 0)
    if "output" in counts:
        counts["output"] -= counts.get("output_reasoning_tokens", 0)
    return counts


def _generic_usage(attributes: dict[str, Any]) -> dict[str, int]:
    """Every ``gen_ai.usage.*`` / ``llm.token_count.*`` count; input loses cache reads and writes."""
    found: dict[str, int] = {}
    for key, value in attributes.items():
        prefix = next((p for p in ("gen_ai.usage.", "llm.token_count.") if key.startswith(p)), None)
        count = as_count(value) if prefix and key != "gen_ai.usage.cost" else None
        if prefix and count is not None:
            found[key[len(prefix) :].removeprefix("details.")] = count
    usage: dict[str, int] = {}
    for name, aliases in USAGE_ALIASES.items():
        present = [found.pop(alias) for alias in aliases if alias in found]
        if present:
            usage[name] = present[0]
    if "input" in usage:
        usage["input"] -= usage.get("input_cached_tokens", 0) + usage.get("input_cache_creation", 0)
    return {**usage, **found}


def cost_details(span: SpanView) -> dict[str, Any] | None:
    explicit = parse_json(span.attributes.get("langfuse.observation.cost_details"))
    if isinstance(explicit, dict):
        return explicit
    total = parse_json(first(span.attributes, "gen_ai.usage.cost", "llm.cost.total"))
    return {"total": total} if isinstance(total, int | float) and not isinstance(total, bool) else None


Found = tuple[Any, tuple[str, ...]] | None  # a value and the attribute keys it came from


def input_output(span: SpanView) -> tuple[Any, Any, frozenset[str]]:
    """Input, output and the attribute keys they were taken from."""
    found = [next(filter(None, (_source(span.attributes, key) for key in keys)), None) for keys in IO_KEYS]
    keys = frozenset(key for hit in found if hit for key in hit[1])
    return (found[0] or (None,))[0], (found[1] or (None,))[0], keys


def _source(attributes: dict[str, Any], key: str) -> Found:
    if key.endswith(".*"):
        return _flattened(attributes, key[:-2])
    if key.startswith("text:"):
        key = key[5:]
        return (attributes[key], (key,)) if attributes.get(key) is not None else None
    return _json_at(attributes, key)


def _json_at(attributes: dict[str, Any], key: str) -> Found:
    value = parse_json(attributes.get(key))
    return (value, (key,)) if value is not None else None


def _flattened(attributes: dict[str, Any], prefix: str) -> Found:
    """``prefix`` itself (JSON), else its ``prefix.N.field`` keys rebuilt into arrays and objects."""
    if attributes.get(prefix) is not None:
        return _json_at(attributes, prefix)
    keys = tuple(key for key in attributes if key.startswith(prefix + "."))
    tree: dict[str, Any] = {}
    for key in keys:
        path = key[len(prefix) + 1 :].split(".")
        node = tree
        for part in path[:-1] if len(path) <= MAX_PATH_SEGMENTS else ():
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict) and len(path) <= MAX_PATH_SEGMENTS:
            node[path[-1]] = attributes[key]
    return (_arrays(tree), keys) if keys else None


def _arrays(node: Any) -> Any:
    """Objects whose keys are all indexes become arrays (holes are null; indexes past the cap are dropped)."""
    if not isinstance(node, dict):
        return node
    if node and all(key.isdecimal() and key.isascii() for key in node):
        slots = {int(key): value for key, value in node.items() if int(key) < MAX_ARRAY_SLOTS}
        return [_arrays(slots.get(index)) for index in range(max(slots, default=-1) + 1)]
    return {key: _arrays(value) for key, value in node.items()}
