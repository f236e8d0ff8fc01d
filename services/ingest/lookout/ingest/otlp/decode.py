"""Decoding an OTLP/HTTP export request body (protobuf or JSON) into ExportTraceServiceRequest."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class OtlpDecodeError(ValueError):
    """The body is not decodable as its declared content type (HTTP 400)."""


class UnsupportedMediaType(ValueError):
    """The content type is neither OTLP protobuf nor OTLP JSON (HTTP 415)."""


# "application/protobuf" is the IANA-registered name; some clients send it instead.
_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPE = "application/json"


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _PROTOBUF_TYPES:
        return _decode_protobuf(body)
    if media_type == _JSON_TYPE:
        return _decode_json(body)
    raise UnsupportedMediaType(
        f"unsupported content type {content_type!r}: OTLP/HTTP takes application/x-protobuf or application/json"
    )


def _decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


def _decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpDecodeError("OTLP/JSON body must be a JSON object")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        # OTLP/JSON receivers must ignore fields they do not know (newer senders add some).
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects base64;
    rewrite them in place so json_format reads the right bytes."""
    for resource_spans in _objects(_field(document, "resourceSpans", "resource_spans")):
        for scope_spans in _objects(_field(resource_spans, "scopeSpans", "scope_spans")):
            for span in _objects(scope_spans.get("spans")):
                _rewrite_ids(span, ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"))
                for link in _objects(span.get("links")):
                    _rewrite_ids(link, ("traceId", "trace_id", "spanId", "span_id"))


def _field(obj: dict[str, Any], json_name: str, proto_name: str) -> Any:
    # The spec allows only lowerCamelCase keys, but json_format also takes the proto names, and
    # ids under a key we skipped would be read as base64: wrong bytes, silently.
    return obj[json_name] if json_name in obj else obj.get(proto_name)


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _rewrite_ids(obj: dict[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            # Not hex: some exporters send protobuf's base64 anyway; json_format decodes it or fails.
            continue
        obj[key] = base64.b64encode(raw).decode("ascii")


def span_count(request: ExportTraceServiceRequest) -> int:
    """Spans in a decoded request, without looking at any of them (repeated-field lengths)."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
