-- API keys: only a SHA-256 of the secret is stored. Keys are 256-bit random, so a fast
-- hash is enough (no dictionary attack applies); lookups go by key_id, compared in
-- constant time. Each change writes a new row with a higher version.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_id String,
    key_hash String,
    app_id String,
    scopes Array(LowCardinality(String)),
    name String,
    created_at DateTime64(3, 'UTC'),
    revoked UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id;
