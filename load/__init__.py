"""Load-testing tools: synthetic streams, recordings and replays (record format: ``pipeline.recordfile``)."""
