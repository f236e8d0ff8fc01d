"""Prometheus metrics of the drift service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("lookout_drift_events_total", "Events read from llm.events by outcome",
                 ["outcome"])  # sampled, unsampled, duplicate, bad, over_stream_limit
TEXTS_EMBEDDED = Counter("lookout_drift_texts_embedded_total", "Texts the encoder embedded")
ENCODE_SECONDS = Histogram("lookout_drift_encode_seconds", "Time per encoder call",
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WINDOWS = Counter("lookout_drift_windows_tested_total", "Windows tested")
TEST_SECONDS = Histogram("lookout_drift_test_seconds", "Time per window for all its tests",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RESULTS = Counter("lookout_drift_results_total", "Drift results produced", ["signal", "drifted"])
OVER_STREAM_LIMIT = Counter("lookout_drift_over_stream_limit_events_total",
                            "Events skipped because their stream was past a cap", ["app_id", "cap"])  # app, total
STREAMS = Gauge("lookout_drift_streams", "Streams tracked by this worker")
SAMPLE_RATE = Gauge("lookout_drift_sample_rate", "Share of events of the last batch that were embedded")
ENCODER_RATE = Gauge("lookout_drift_encoder_texts_per_second", "Measured encoder throughput")
CONSUMER_LAG = Gauge("lookout_drift_consumer_lag_seconds", "Age of the newest event of the last batch")
EVIDENCE_SECONDS = Histogram("lookout_drift_evidence_seconds", "Time per stream and batch for the sequential evidence",
                             buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
