import orjson

from load.replay import Pace, paced, rewrite
from pipeline.recordfile import Record


def test_rewrite_suffixes_every_id_and_recomputes_the_key():
    event = {
        "id": "e1",
        "project_id": "p",
        "type": "span-create",
        "timestamp": "2024-01-01T00:00:00Z",
        "body": {"id": "s", "traceId": "t", "parentObservationId": "g", "name": "keep"},
    }
    out = rewrite(Record(value=orjson.dumps(event), key=b"p:observation:s"), "-x")
    value = orjson.loads(out.value)
    assert (value["id"], value["project_id"]) == ("e1-x", "p-x")
    assert value["body"] == {"id": "s-x", "traceId": "t-x", "parentObservationId": "g-x", "name": "keep"}
    assert out.key == b"p-x:observation:s-x"


def test_rewrite_leaves_invalid_messages_untouched():
    record = Record(value=b"{broken", key=b"k")
    assert rewrite(record, "-x") is record


def test_pacing_at_recorded_speed_rate_and_full_speed():
    records = [Record(value=b"", timestamp_ms=t) for t in (1000, 1500, 3000)]
    assert [due for due, _ in paced(records, Pace(speed=1))] == [0.0, 0.5, 2.0]
    assert [due for due, _ in paced(records, Pace(speed=2))] == [0.0, 0.25, 1.0]
    assert [due for due, _ in paced(records, Pace(rate=10))] == [0.0, 0.1, 0.2]
    assert [due for due, _ in paced(records, Pace())] == [0.0, 0.0, 0.0]
