-- Per-field merge clocks of each entity, written with its row. When an entity's state has left a worker's
-- memory (eviction, restart, rebalance), these let a late or redelivered event merge exactly as if the
-- whole history were still in memory: any arrival order and any duplication give the same row.
CREATE TABLE IF NOT EXISTS merge_clocks
(
    project_id String,
    entity LowCardinality(String),
    id String,
    clocks String CODEC(ZSTD(3)),
    event_ts DateTime64(3)
)
ENGINE = ReplacingMergeTree(event_ts)
ORDER BY (project_id, entity, id);
