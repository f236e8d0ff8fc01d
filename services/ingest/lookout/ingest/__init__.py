"""lookout-ingest: HTTP + OTLP intake and the ClickHouse sink."""
