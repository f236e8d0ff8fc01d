"""OTLP/HTTP trace intake: decode an export request, and turn its spans into what Lookout
stores: LLM calls, the trace steps around them, and client-side evaluations.

One module per instrumentation convention (`genai`, `openinference`, `openllmetry`,
`openlit`), all reading the one span model in `spans`; `convert` runs them and builds the
records; `coverage` counts per source what was mapped and what was dropped; `decode` and
`response` are the OTLP/HTTP wire.
"""

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from . import coverage
from .convert import OtlpResult, convert
from .decode import OtlpDecodeError, UnsupportedMediaType, decode_request, span_count

__all__ = [
    "ExportTraceServiceRequest",
    "OtlpDecodeError",
    "OtlpResult",
    "UnsupportedMediaType",
    "convert",
    "coverage",
    "decode_request",
    "span_count",
]
