"""lfpipe: a Kafka -> Faust -> ClickHouse ingestion pipeline for Langfuse-style observability events.

The data flow reads from the folder names: ``sources`` (Kafka topics and the Faust app) ->
``transforms`` (pure: validate, dedup, merge, enrich) -> ``sinks`` (ClickHouse, archive, dead letters).
``worker`` wires them together; ``stack`` runs the local services; ``cli`` is the operator's entry point.
"""
