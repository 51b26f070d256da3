"""Pure, synchronous stages: no Kafka, ClickHouse or object storage in here."""
