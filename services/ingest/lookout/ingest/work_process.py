"""What every ingest worker process (workers.ProcessRunner) has loaded before its first
job: the forkserver imports this module once, and each worker forked from it starts with
decoding, validation, redaction and OTLP conversion already imported.

Metrics stay in the serving process (it counts from each job's result), so a worker's own
metric objects must not write Prometheus multiprocess files (LOOKOUT_HTTP_WORKERS > 1 sets
PROMETHEUS_MULTIPROC_DIR): the variable goes before prometheus_client is first imported.
"""

import os

os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ.pop("prometheus_multiproc_dir", None)

from . import prepare, workers  # noqa: F401
