"""The OTLP/HTTP response body: ExportTraceServiceResponse, in the request's encoding,
with partial_success set when some GenAI spans were rejected (OTLP's way to say so
without making the exporter retry the whole batch)."""

from __future__ import annotations

from fastapi.responses import Response
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse


def build(content_type: str, *, rejected: int, message: str) -> Response:
    reply = ExportTraceServiceResponse()
    if rejected:
        reply.partial_success.rejected_spans = rejected
        reply.partial_success.error_message = message
    if content_type.split(";")[0].strip().lower() == "application/json":
        return Response(json_format.MessageToJson(reply), media_type="application/json")
    return Response(reply.SerializeToString(), media_type="application/x-protobuf")
