"""An independent reference merge: Langfuse's sequential fold, written from the study, not from pipeline code.

Events of each entity are sorted by (envelope timestamp, create before update, event id) and folded one by
one, as Langfuse's ``mergeRecords`` does (Langfuse breaks the last tie by arrival; the pipeline by event id, so
that a producer retry can never change a row). Only the fields the generated streams use are covered.
Prices come straight from the public Langfuse price list in ../shared/reference, not from our model table.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

PRICE_LIST = Path(__file__).resolve().parents[2] / "shared" / "reference" / "langfuse-default-model-prices.json"
UPDATES = {"span-update", "generation-update", "observation-update"}
IMMUTABLE = {
    "trace": {"timestamp", "environment"},
    "observation": {"trace_id", "start_time", "environment", "type"},
    "score": {"timestamp", "trace_id", "environment"},
}


def _entity(kind: str) -> str:
    return "trace" if kind == "trace-create" else "score" if kind == "score-create" else "observation"


def _ms(stamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, False)


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _usage(body: dict[str, Any]) -> dict[str, int] | None:
    details = body.get("usageDetails")
    legacy = body.get("usage")
    if details and "prompt_tokens" in details:
        cached = (details.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        return {
            "input": max(details["prompt_tokens"] - cached, 0),
            "input_cached_tokens": cached,
            "output": details["completion_tokens"],
            "total": details["total_tokens"],
        }
    if details:
        usage = dict(details)
        usage.setdefault("total", sum(usage.values()))  # a missing total is the sum of every key
        return usage
    if legacy:
        usage = {k: legacy[k] for k in ("input", "output", "total") if k in legacy}
        if "total" not in usage:
            usage["total"] = usage.get("input", 0) + usage.get("output", 0)
        return usage
    return None


def _fields(entity: str, event: dict[str, Any]) -> dict[str, Any]:
    body = event["body"]
    ts = _ms(event["timestamp"])
    out: dict[str, Any] = {"environment": body.get("environment") or "default"}
    if entity == "trace":
        out["timestamp"] = _ms(body["timestamp"]) if body.get("timestamp") else ts
        for src, dst in (("name", "name"), ("userId", "user_id"), ("sessionId", "session_id")):
            if src in body:
                out[dst] = body[src]
    elif entity == "observation":
        kind = event["type"].rsplit("-", 1)[0]
        out["type"] = body["type"] if kind == "observation" else kind.upper()
        out["start_time"] = _ms(body["startTime"]) if body.get("startTime") else ts
        if body.get("traceId"):
            out["trace_id"] = body["traceId"]
        for src, dst in (("name", "name"), ("model", "provided_model_name")):
            if src in body:  # null overwrites these, as in Langfuse
                out[dst] = body[src]
        if body.get("parentObservationId"):
            out["parent_observation_id"] = body["parentObservationId"]
        if body.get("endTime"):
            out["end_time"] = _ms(body["endTime"])
        usage = _usage(body)
        if usage:
            out["usage_details"] = usage
    else:
        value = body["value"]
        data_type = body.get("dataType") or ("CATEGORICAL" if isinstance(value, str) else "NUMERIC")
        out.update(
            timestamp=ts, name=body["name"], data_type=data_type, value=0.0 if isinstance(value, str) else float(value)
        )
        out["string_value"] = (
            value
            if data_type in ("CATEGORICAL", "TEXT")
            else (("True" if value == 1 else "False") if data_type == "BOOLEAN" else None)
        )
        if body.get("traceId"):
            out["trace_id"] = body["traceId"]
        if "comment" in body:
            out["comment"] = body["comment"]
    for name in ("input", "output"):
        if _truthy(body.get(name)) and entity != "score":
            out[name] = _dump(body[name])
    return out


def _deep_merge(a: Any, b: Any) -> Any:
    """lodash merge: plain objects by key, arrays by index, anything else replaced."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _deep_merge(out[key], value) if key in out else value
        return out
    if isinstance(a, list) and isinstance(b, list):
        out_list = list(a)
        for index, value in enumerate(b):
            if index < len(out_list):
                out_list[index] = _deep_merge(out_list[index], value)
            else:
                out_list.append(value)
        return out_list
    return b


def reference_rows(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Final rows by (entity, project, id) for valid, deduplicated events in arrival order."""
    seen: set[tuple[str, str]] = set()
    grouped: dict[tuple[str, str, str], list[tuple[tuple[int, int, str], dict[str, Any]]]] = {}
    for event in events:
        if (event["project_id"], event["id"]) in seen:
            continue
        seen.add((event["project_id"], event["id"]))
        entity = _entity(event["type"])
        entity_id = event["body"].get("id") or event["id"]
        rank = 1 if event["type"] in UPDATES else 0
        grouped.setdefault((entity, event["project_id"], entity_id), []).append(
            ((_ms(event["timestamp"]), rank, event["id"]), event)
        )
    rows = {}
    for key, items in grouped.items():
        entity = key[0]
        row: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        tags: set[str] = set()
        for _, event in sorted(items, key=lambda item: item[0]):
            for name, value in _fields(entity, event).items():
                if name in IMMUTABLE[entity] and name in row:
                    continue
                if isinstance(value, dict) and not value:
                    continue
                row[name] = value
            body_metadata = event["body"].get("metadata")
            if isinstance(body_metadata, dict):
                metadata = _deep_merge(metadata, body_metadata)
            tags.update(event["body"].get("tags") or [])
        if entity == "observation":
            _tools(row, metadata)
        row["metadata"] = {k: _dump(v) for k, v in metadata.items()}
        if entity == "trace":
            row["tags"] = sorted(tags)
        if entity == "observation":
            row.setdefault("trace_id", key[2])
            if row.get("end_time") is not None:
                row["end_time"] = max(row["end_time"], row["start_time"])
            row["total_cost"] = reference_cost(row.get("provided_model_name"), row.get("usage_details") or {})
        rows[key] = row
    return rows


def _tools(row: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Tool definitions and calls for the shapes the generated streams send (``load/tool_shapes.py``), as Langfuse
    stores them: the AI SDK's definitions move from metadata into the input; Anthropic's ``input_schema`` is not
    a parameters key Langfuse reads."""
    request = json.loads(row["input"]) if row.get("input", "").startswith(("[", "{")) else row.get("input")
    attributes = metadata.get("attributes")
    if isinstance(attributes, dict) and "ai.prompt.tools" in attributes:
        moved = [json.loads(tool) for tool in attributes["ai.prompt.tools"]]
        rest = {k: v for k, v in attributes.items() if k != "ai.prompt.tools"}
        metadata.pop("attributes")
        if rest:
            metadata["attributes"] = rest
        request = {"messages": request, "tools": moved}
        row["input"] = _dump(request)
    definitions = {}
    for tool in request.get("tools", []) if isinstance(request, dict) else []:
        spec = tool.get("function", tool)
        schema = spec.get("parameters") or spec.get("inputSchema")
        shown = {"description": spec.get("description", ""), "parameters": _dump(schema) if schema else ""}
        definitions.setdefault(spec["name"], _dump(shown))
    row["tool_definitions"] = definitions
    answer = json.loads(row["output"]) if row.get("output", "").startswith("{") else {}
    calls = []
    for call in answer.get("tool_calls") or []:
        if "function" in call:  # OpenAI
            calls.append((call["function"]["name"], call["id"], call["function"]["arguments"], "function"))
        else:  # Vercel AI SDK
            calls.append((call["toolName"], call["toolCallId"], _dump(call["input"]), call["type"]))
    for part in answer.get("content") if isinstance(answer.get("content"), list) else []:
        if part.get("type") == "tool_use":  # Anthropic
            calls.append((part["name"], part["id"], _dump(part["input"]), "tool_use"))
    row["tool_call_names"] = [name for name, *_ in calls]
    row["tool_calls"] = [_dump({"id": i, "arguments": a, "type": t, "index": 0}) for _, i, a, t in calls]


_PRICES: list[tuple[re.Pattern[str], dict[str, Decimal]]] | None = None


def reference_cost(model: str | None, usage: dict[str, int]) -> Decimal | None:
    """usage x default-tier price per exact key, from the public price list (single-tier use only)."""
    global _PRICES
    if _PRICES is None:
        _PRICES = [
            (
                re.compile(entry["matchPattern"]),
                {
                    k: Decimal(repr(v))
                    for k, v in next(t for t in entry["pricingTiers"] if t["isDefault"])["prices"].items()
                },
            )
            for entry in json.loads(PRICE_LIST.read_text())
        ]
    if not model or not usage:
        return None
    prices = next((prices for pattern, prices in _PRICES if pattern.search(model)), None)
    if prices is None:
        return None
    costs = {key: prices[key] * units for key, units in usage.items() if key in prices}
    if not costs:
        return None
    return costs["total"] if "total" in costs else sum(costs.values(), Decimal(0))
