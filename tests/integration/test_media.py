"""Media on the real stack: base64 images leave the rows for content-addressed objects in S3, stored once,
linked in the media table; the rows keep Langfuse reference tokens."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest

from load.generate import StreamShape, generate_stream
from tests.integration.harness import PipelineEnv
from tests.integration.oracle import INVALID

pytestmark = pytest.mark.integration
TOKEN = re.compile(r"@@@langfuseMedia:type=([^|]+)\|id=([A-Za-z0-9_-]{22})\|source=base64_data_uri@@@")


def _payload_bytes(tables: dict) -> int:
    return sum(
        len(row.get(column) or "")
        for table in ("traces", "observations")
        for row in tables[table]
        for column in ("input", "output")
    )


def test_base64_images_become_objects_stored_once_and_tokens_in_rows(
    pipeline_factory: Callable[..., PipelineEnv],
):
    produced = list(generate_stream(StreamShape(traces=60, seed=8, media=0.6, invalid=0, duplicates=0.05)))
    images = {
        match.group(1)
        for record in produced
        if record.value not in INVALID
        for match in re.finditer(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", record.value)
    }
    assert len(images) >= 10, "the stream should carry images"

    extracted = pipeline_factory()
    extracted.produce(produced)
    extracted.drain()
    tables = extracted.tables()

    stored_text = " ".join(
        str(row.get(c)) for t in ("traces", "observations") for row in tables[t] for c in ("input", "output")
    )
    assert "data:image/png;base64," not in stored_text
    tokens = {match.group(2) for match in TOKEN.finditer(stored_text)}
    objects = extracted.objects("media/")
    # Exactly one object per distinct image, named by Langfuse's content address, holding the image's bytes.
    expected = {}
    for encoded in images:
        content = base64.b64decode(encoded)
        expected[base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode()[:22]] = content
    by_id = {key.rsplit("/", 1)[1].removesuffix(".png"): data for key, data in objects.items()}
    assert len(objects) == len(by_id) == len(expected)
    assert by_id == expected
    assert tokens == set(expected)
    assert all(key.startswith("media/") and key.endswith(".png") for key in objects)

    links = tables["media"]
    assert {row["media_id"] for row in links} == set(expected)
    assert all(row["bucket_path"] in {f"media/{row['project_id']}/{row['media_id']}.png"} for row in links)
    assert all(row["trace_id"] for row in links)

    # The same stream with extraction switched off: how much the rows shrink.
    inline = pipeline_factory()
    inline.produce(produced)
    inline.drain(media_min_bytes=10**12)
    inline_bytes = _payload_bytes(inline.tables())
    saving = 1 - _payload_bytes(tables) / inline_bytes
    print(f"input/output bytes: {inline_bytes} inline, {_payload_bytes(tables)} extracted ({saving:.1%} saved)")
    assert saving > 0.5
