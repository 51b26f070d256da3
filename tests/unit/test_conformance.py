"""Langfuse conformance items (study section 7.2) not covered elsewhere, named after the behaviour.

The full mapping of items to tests is in tests/CONFORMANCE.md.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import bpe_openai
import orjson
import pytest

from pipeline.transforms.catalog import Catalog
from tests.unit.helpers import envelope, merged, run_batch, through_storage

T0, T1 = "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:01.000Z"
PRICE_LIST = Path(__file__).resolve().parents[3] / "shared" / "reference" / "langfuse-default-model-prices.json"


def _observation(rows: dict) -> dict:
    return next(row for key, row in rows.items() if key[0] == "observation")


def test_generation_without_usage_is_tokenized_from_json_payloads():  # item 28
    event = envelope(
        "generation-create",
        {
            "id": "g",
            "model": "gpt-3.5-turbo",
            "input": {"key": "value"},
            "output": {"key": "this is a great gpt output"},
        },
    )
    row = _observation(merged([event]))
    assert row["usage_details"] == {"input": 5, "output": 11, "total": 16}
    assert row["total_cost"] is not None and row["total_cost"] > 0


def test_error_level_generations_are_not_tokenized():  # item 26
    event = envelope("generation-create", {"id": "g", "model": "gpt-4o", "input": "hello", "level": "ERROR"})
    row = _observation(merged([event]))
    assert row["usage_details"] == {} and row["total_cost"] is None


def test_spans_are_never_tokenized():
    event = envelope("span-create", {"id": "s", "input": "hello world"})
    assert _observation(merged([event]))["usage_details"] == {}


def test_chat_messages_count_with_openai_message_overhead():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there", "name": "ann"}]
    event = envelope("generation-create", {"id": "g", "model": "gpt-4o", "input": messages})
    encoding = bpe_openai.encoding_for_model("gpt-4o")
    # gpt-4o: 3 tokens per message, 1 per name, 3 to prime the reply (the price list's tokenizer config).
    expected = 3 + sum(
        3 + sum(len(encoding.encode(v)) for v in m.values()) + (1 if "name" in m else 0) for m in messages
    )
    assert _observation(merged([event]))["usage_details"]["input"] == expected


def test_claude_models_are_tokenized_with_the_claude_tokenizer():
    event = envelope(
        "generation-create",
        {
            "id": "g",
            "model": "claude-3-5-sonnet-20241022",
            "input": "Tell me a joke",
            "output": "Why did the chicken cross?",
        },
    )
    row = _observation(merged([event]))
    assert row["usage_details"]["input"] > 0 and row["usage_details"]["output"] > 0
    assert row["total_cost"] > 0


def test_update_without_model_arriving_first_still_tokenizes_the_merged_io():  # item 1.7 order rule
    create = envelope(
        "generation-create", {"id": "g", "model": "gpt-3.5-turbo", "input": {"key": "value"}}, ts=T0, event_id="a"
    )
    update = envelope(
        "generation-update", {"id": "g", "output": {"key": "this is a great gpt output"}}, ts=T1, event_id="b"
    )
    row = _observation(merged([update, create]))
    assert row["usage_details"] == {"input": 5, "output": 11, "total": 16}
    assert row["provided_model_name"] == "gpt-3.5-turbo"


def test_model_from_a_later_event_prices_usage_from_an_earlier_one():  # item 25
    create = envelope("generation-create", {"id": "g", "usage": {"input": 1295, "output": 18}}, ts=T0, event_id="a")
    update = envelope("generation-update", {"id": "g", "model": "gpt-4o-mini"}, ts=T1, event_id="b")
    assert _observation(merged([create, update]))["total_cost"] == Decimal("0.00020505")


def test_no_model_and_no_cost_keeps_usage_without_model_id():  # item 25
    row = _observation(merged([envelope("generation-create", {"id": "g", "usage": {"input": 3}})]))
    assert (row["internal_model_id"], row["total_cost"], row["usage_details"]) == (None, None, {"input": 3, "total": 3})


def test_negative_usage_is_dropped_from_provided_and_final_usage():  # item 21
    event = envelope(
        "generation-create", {"id": "g", "model": "gpt-4o-mini", "usageDetails": {"input": 1000, "output": -7}}
    )
    row = _observation(merged([event]))
    assert row["provided_usage_details"] == {"input": 1000}
    assert row["usage_details"] == {"input": 1000, "total": 1000}
    assert row["cost_details"] == {"input": Decimal("0.00015"), "total": Decimal("0.00015")}


def test_a_later_event_without_costs_keeps_earlier_provided_costs():  # item 23
    create = envelope(
        "generation-create",
        {"id": "g", "model": "gpt-4o-mini", "usage": {"input": 10}, "costDetails": {"input": 0.5}},
        ts=T0,
        event_id="a",
    )
    update = envelope("generation-update", {"id": "g", "output": "done"}, ts=T1, event_id="b")
    assert _observation(merged([create, update]))["cost_details"] == {"input": Decimal("0.5"), "total": Decimal("0.5")}


def test_fine_tuned_model_names_match_their_base_pattern():  # item 27
    event = envelope(
        "generation-create",
        {"id": "g", "model": "ft:gpt-3.5-turbo-0613:acme::8abc", "usage": {"input": 1000, "output": 1000}},
    )
    assert _observation(merged([event]))["internal_model_id"] is not None


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-sonnet-20241022", "text-embedding-3-small"])
def test_reference_generations_price_exactly_like_the_public_price_list(model):
    usage = {"input": 123_457, "output": 9_871, "total": 133_328}
    entry = next(
        e for e in json.loads(PRICE_LIST.read_text()) if e["modelName"] in (model, model.replace("-5-", ".5-"))
    )
    prices = next(t for t in entry["pricingTiers"] if t["isDefault"])["prices"]
    costs = {k: Decimal(repr(prices[k])) * n for k, n in usage.items() if k in prices}
    expected_total = costs["total"] if "total" in costs else sum(costs.values())
    event = envelope("generation-create", {"id": "g", "model": model, "usageDetails": usage})
    assert _observation(merged([event]))["total_cost"] == expected_total


def test_invalid_scores_are_dead_lettered_while_valid_ones_are_written():  # item 30
    good = envelope("score-create", {"id": "ok", "name": "q", "value": 0.5, "traceId": "t"}, event_id="a")
    bad = envelope(
        "score-create", {"id": "bad", "name": "q", "value": 2, "dataType": "BOOLEAN", "traceId": "t"}, event_id="b"
    )
    out = run_batch([good, bad])
    assert [row["id"] for row in out.rows["scores"]] == ["ok"]
    assert len(out.dead_letters) == 1 and "BOOLEAN" in out.dead_letters[0].reason


def _catalog() -> Catalog:
    catalog = Catalog([])
    catalog.apply(
        "score-config/p1/cfg", {"name": "helpfulness", "data_type": "NUMERIC", "min_value": 0, "max_value": 10}
    )
    catalog.apply(
        "score-config/p1/cat",
        {
            "name": "topic",
            "data_type": "CATEGORICAL",
            "categories": [{"label": "billing", "value": 1}, {"label": "other", "value": 2}],
        },
    )
    catalog.apply("score-config/p1/old", {"name": "old", "data_type": "NUMERIC", "is_archived": True})
    return catalog


def test_score_config_decides_name_and_type_and_ids_persist():  # item 31
    event = envelope(
        "score-create",
        {
            "id": "s",
            "name": "whatever",
            "value": 7,
            "traceId": "t",
            "observationId": "o",
            "configId": "cfg",
            "queueId": "q1",
        },
    )
    row = run_batch([event], _catalog()).rows["scores"][0]
    assert (row["name"], row["data_type"], row["value"]) == ("helpfulness", "NUMERIC", 7.0)
    assert (row["config_id"], row["queue_id"], row["observation_id"]) == ("cfg", "q1", "o")


def test_categorical_score_label_maps_to_the_config_value():
    event = envelope(
        "score-create", {"id": "s", "name": "topic", "value": "billing", "traceId": "t", "configId": "cat"}
    )
    row = run_batch([event], _catalog()).rows["scores"][0]
    assert (row["value"], row["string_value"]) == (1.0, "billing")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"value": 11, "configId": "cfg"}, "above the config maximum"),
        ({"value": 1, "configId": "old"}, "archived"),
        ({"value": 1, "configId": "missing"}, "does not exist"),
        ({"value": "weather", "configId": "cat"}, "not a category"),
        ({"value": 1, "source": "ANNOTATION"}, "needs a configId"),
    ],
)
def test_scores_breaking_their_config_are_dead_lettered_with_the_reason(body, reason):
    event = envelope("score-create", {"id": "s", "name": "n", "traceId": "t", **body})
    out = run_batch([event], _catalog())
    assert not out.rows and reason in out.dead_letters[0].reason


def test_scores_keep_ingestion_attribution_from_kafka_headers():  # item 9
    event = envelope("score-create", {"id": "s", "name": "q", "value": 1, "traceId": "t"})
    headers = (
        ("x-langfuse-sdk-name", b"python"),
        ("x-langfuse-sdk-version", b"2.1.0"),
        ("x-langfuse-public-key", b"pk-lf-1"),
    )
    row = run_batch([event], headers=headers).rows["scores"][0]
    assert (row["ingestion_sdk_name"], row["ingestion_sdk_version"], row["ingestion_api_key"]) == (
        "python",
        "2.1.0",
        "pk-lf-1",
    )


def test_big_number_metadata_strings_survive_on_observations_and_scores():  # item 7
    meta = {"n": "1983516295378495150"}
    rows = merged(
        [
            envelope("span-create", {"id": "s", "metadata": meta}, event_id="a"),
            envelope(
                "score-create", {"id": "c", "name": "q", "value": 1, "traceId": "t", "metadata": meta}, event_id="b"
            ),
        ]
    )
    assert all(row["metadata"] == meta for row in rows.values())


def test_trace_created_at_is_preserved_from_the_stored_row():  # item 19
    first = envelope("trace-create", {"id": "t", "name": "a"}, ts=T0, event_id="a")
    second = envelope("trace-create", {"id": "t", "name": "b"}, ts=T1, event_id="b")
    row = through_storage([first, second])
    assert row["name"] == "b" and row["created_at"] == 1_700_000_000_000


def test_events_count_as_seen_only_once_durable_unlike_langfuse_bug_16017():
    from pipeline.recordfile import Record
    from pipeline.runtime.processor import Processor
    from tests.unit.helpers import CATALOG

    processor = Processor(CATALOG, 5_000_000, 100, 100)
    record = Record(value=orjson.dumps(envelope("trace-create", {"id": "t", "name": "n"})), offset=0)
    first = processor.process([record], lambda keys: {}, 0)
    # While the batch is in flight, the next batch does not merge the same event again.
    assert processor.process([record], lambda keys: {}, 0).counts["deduplicated"] == 1
    # The batch was never made durable (its partitions moved away): a redelivery must be processed again.
    processor.discard(first)
    again = processor.process([record], lambda keys: {}, 0)
    assert first.counts["processed"] == again.counts["processed"] == 1
    processor.mark_durable(again)
    assert processor.process([record], lambda keys: {}, 0).counts["deduplicated"] == 1


def test_sdk_trace_create_does_not_reset_public_unlike_langfuse():
    first = envelope("trace-create", {"id": "t", "public": True}, ts=T0, event_id="a")
    later = envelope("trace-create", {"id": "t", "name": "renamed"}, ts=T1, event_id="b")
    row = next(iter(merged([first, later]).values()))
    assert row["public"] is True and row["name"] == "renamed"


def test_usage_beyond_uint64_and_unicode_digits_are_dropped_and_huge_costs_clamped():
    event = envelope(
        "generation-create",
        {
            "id": "g",
            "usageDetails": {"input": "99999999999999999999999", "output": "²", "cached": 5},
            "costDetails": {"input": 1e300},
        },
    )
    row = _observation(merged([event]))
    assert row["provided_usage_details"] == {"cached": 5}
    assert row["provided_cost_details"] == {"input": Decimal("999999.999999999999")}
    assert row["total_cost"] == Decimal("999999.999999999999")


def test_epoch_zero_start_time_is_a_time_not_a_missing_value():
    row = _observation(merged([envelope("span-create", {"id": "s", "startTime": "1970-01-01T00:00:00Z"})]))
    assert row["start_time"] == 0


def test_should_merge_observations_and_set_negative_tokens_and_cost_to_null():
    # IngestionService.integration.test.ts: a legacy usage whose total is negative names a total, so none is
    # derived; the negatives are then dropped with it.
    create = envelope("generation-create", {"id": "g", "model": "gpt-4o-mini-2024-07-18"}, ts=T0, event_id="a")
    update = envelope(
        "generation-update",
        {"id": "g", "usage": {"input": 4, "output": -7, "total": -3, "unit": "TOKENS"}},
        ts=T1,
        event_id="b",
    )
    row = _observation(merged([create, update]))
    assert row["provided_usage_details"] == {"input": 4}
    assert row["usage_details"] == {"input": 4, "total": 4}
    assert set(row["cost_details"]) == {"input", "total"} and row["cost_details"]["input"] > 0


def test_should_correctly_ingest_a_text_score():
    # IngestionService.integration.test.ts: TEXT keeps its text in string_value; only CORRECTION uses
    # long_string_value.
    text = envelope("score-create", {"id": "s", "name": "feedback", "value": "Great answer", "dataType": "TEXT"})
    fix = envelope(
        "score-create",
        {"id": "c", "name": "correction", "value": "The answer is 42", "dataType": "CORRECTION", "traceId": "t"},
        event_id="e2",
    )
    rows = merged([{**text, "body": {**text["body"], "traceId": "t"}}, fix])
    by_id = {key[2]: row for key, row in rows.items() if key[0] == "score"}
    assert (by_id["s"]["string_value"], by_id["s"]["value"], by_id["s"]["long_string_value"]) == (
        "Great answer",
        0.0,
        "",
    )
    assert (by_id["c"]["string_value"], by_id["c"]["long_string_value"]) == (None, "The answer is 42")
