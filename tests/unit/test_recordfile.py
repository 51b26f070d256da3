import io

import pytest

from pipeline.recordfile import Record, decode_records, encode_records, read_records, write_records


def test_records_round_trip_with_keys_headers_and_raw_bytes():
    records = [
        Record(
            value=b'{"a":1}',
            key=b"p:trace:t",
            timestamp_ms=1234,
            topic="in",
            partition=3,
            offset=9,
            headers=(("h", b"\x00\xff"),),
        ),
        Record(value=b"\x00not json\xff", key=None),
    ]
    assert decode_records(encode_records(records)) == records


def test_a_truncated_file_is_reported_not_silently_short():
    data = encode_records([Record(value=b"x" * 1000, key=b"k")], level=1)
    with pytest.raises(ValueError):
        list(read_records(io.BytesIO(data[: len(data) // 2])))


def test_other_files_are_refused():
    import zstandard

    with pytest.raises(ValueError, match="not an LFR1"):
        decode_records(zstandard.ZstdCompressor().compress(b"hello world"))


def test_the_streaming_writer_and_the_in_memory_encoding_write_the_same_records():
    records = [Record(value=f'{{"n":{n}}}'.encode(), key=b"k" if n % 2 else None, offset=n) for n in range(500)]
    streamed = io.BytesIO()
    assert write_records(streamed, records) == 500
    assert decode_records(streamed.getvalue()) == decode_records(encode_records(records)) == records
