-- Media extracted from (or referenced by) input, output and metadata: one row per link between a media object
-- and the trace or observation field it appears in (Langfuse keeps these in Postgres: media, trace_media,
-- observation_media). Objects live in object storage at media/<project_id>/<media_id>.<ext>, content-addressed,
-- so identical content is stored once. Rows for tokens an SDK uploaded elsewhere have an empty bucket_path.
CREATE TABLE IF NOT EXISTS media
(
    project_id String,
    media_id String,
    trace_id String,
    observation_id String DEFAULT '',
    field LowCardinality(String),
    content_type LowCardinality(String),
    sha_256_hash String,
    content_length UInt64,
    bucket_path String,
    created_at DateTime64(3) DEFAULT now(),
    event_ts DateTime64(3),
    is_deleted UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(event_ts, is_deleted)
ORDER BY (project_id, media_id, trace_id, observation_id, field);
