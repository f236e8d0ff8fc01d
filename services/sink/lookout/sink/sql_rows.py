"""ClickHouse parses a topic's records and builds its rows itself: one INSERT ... SELECT
over the batch's JSON (JSONEachRow), with the wire schema's defaults, checks and the row
transforms of rows.py written in SQL. Python never decodes a record on this path.

The checks are the wire schema's (events.LlmCall), written so that they are never looser:
a record the schema refuses makes the server refuse the whole statement (throwIf), and the
sink then stores that batch the validating way (store.py), which dead-letters the record
with pydantic's error and stores the rest. Where exact agreement would be costly to write
(unusual timestamp forms, numbers in strings, characters JSON escapes differently), the SQL
refuses too: such a batch is stored the slower way, never differently.

The statement is the same for chdb and a ClickHouse server; only the carrier of the bytes
differs (carrier.py): a server reads them from the request body through `input()`, chdb
(which has no request body, and ignores data put after an `input()` query) from a file
through `file()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple

from .carrier import settings_clause

# Parsing as strict as the wire schema: nothing coerced that pydantic would refuse.
SETTINGS: dict[str, int | str] = {
    # Unknown fields refused, unlike events._Wire.from_bytes: with skipping on, ClickHouse
    # also skips a field given twice (keeping the first, where orjson keeps the last). A
    # newer producer's extra field (a rolling upgrade) sends its batches the validating way.
    "input_format_skip_unknown_fields": 0,
    "input_format_null_as_default": 0,  # null where the schema has no None: refused
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_bools_as_numbers": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_ignore_unknown_keys_in_named_tuple": 0,  # Message is extra="forbid"
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 1,
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
    "output_format_json_escape_forward_slashes": 0,  # toJSONString writes '/' as orjson does
    # The default float parser is fast but not correctly rounded: 3 019 of 20 000 random
    # floats came out one bit away from what Python (and so the validating way) reads.
    "precise_float_parsing": 1,
}


def _identifier(column: str, lo: int, hi: int, app: bool = False) -> str:
    # events._IDENTIFIER / _APP_ID: the allowed characters, a letter or digit first, never '--'.
    chars = "A-Za-z0-9._:-" if app else "A-Za-z0-9._:/@+-"
    return (f"match({column}, '^[A-Za-z0-9][{chars}]*$') AND position({column}, '--') = 0 "
            f"AND length({column}) BETWEEN {lo} AND {hi}")


def _text(column: str, hi: int) -> str:
    return f"isValidUTF8({column}) AND lengthUTF8({column}) <= {hi}"


def _opt_text(column: str, hi: int) -> str:
    return f"(isNull({column}) OR ({_text(f'assumeNotNull({column})', hi)}))"


def _opt_version(column: str) -> str:
    # VersionId: "" means none; else an identifier of at most 1 KiB.
    v = f"assumeNotNull({column})"
    return f"(isNull({column}) OR {v} = '' OR ({_identifier(v, 1, 1024)}))"


def _opt_int(column: str, lo: int, hi: int) -> str:
    v = f"assumeNotNull({column})"
    return f"(isNull({column}) OR {v} BETWEEN {lo} AND {hi})"


def _opt_number(column: str, lo: float, hi: float | None) -> str:
    v = f"assumeNotNull({column})"
    upper = f" AND {v} <= {hi}" if hi is not None else ""
    return f"(isNull({column}) OR (NOT isNaN({v}) AND NOT isInfinite({v}) AND {v} >= {lo}{upper}))"


def _texts(column: str, hi: int, most: int) -> str:
    return (f"length({column}) <= {most} AND arrayAll(x -> isValidUTF8(x) AND lengthUTF8(x) <= {hi}, {column})")


def _json_string(value: str) -> str:
    return f"toJSONString({value})"


# Characters that orjson and ClickHouse's JSON writer escape differently (ClickHouse writes
# U+2028/U+2029 as \u escapes, orjson raw; DEL and the C1 range are raw in both, but kept out
# so that equality never depends on one writer's version): messages holding them go the slow way.
_MESSAGE_TEXT_OK = "position({v}, unhex('E280A8')) = 0 AND position({v}, unhex('E280A9')) = 0"

# events.LlmCall, field by field. Optional lists are Variants: JSON null stays null there
# (an Array cannot be Nullable), so null and [] are told apart from a value of the wrong type.
_CALL_STRUCTURE = ", ".join([
    "schema String", "event_id UUID", "ts String", "app_id String", "environment String", "provider String",
    "model String", "model_version Nullable(String)", "prompt_version Nullable(String)",
    "input Array(Tuple(role String, content Nullable(String), name Nullable(String)))",
    "prompt Nullable(String)", "output Nullable(String)", "tokens_in Nullable(Int64)", "tokens_out Nullable(Int64)",
    "tokens_cache_read Nullable(Int64)", "tokens_cache_write Nullable(Int64)", "tokens_reasoning Nullable(Int64)",
    "latency_ms Nullable(Float64)", "ttft_ms Nullable(Float64)", "status String", "error Nullable(String)",
    "cost_usd Nullable(Float64)", "user_id Nullable(String)", "session_id Nullable(String)",
    "trace_id Nullable(String)", "span_id Nullable(String)", "tags Array(String)", "metadata Map(String, String)",
    "context Variant(Array(String))", "reference Nullable(String)", "logprobs Variant(Array(Float64))",
])

_TS = ("^(19[7-9][0-9]|2[01][0-9][0-9]|22[0-5][0-9])-(0[1-9]|1[0-2])-[0-3][0-9]"
       "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")

_CALL_CHECKS = (
    "schema = 'llm_call/1'",
    "event_id != toUUID('00000000-0000-0000-0000-000000000000')",  # also what a missing id reads as
    # Whole-second and microsecond ISO 8601 with an offset, years 1971-2259 (no clamping, no
    # negative epoch, where flooring and truncation would differ); a real calendar date.
    f"match(ts, '{_TS}') AND toString(toDateOrNull(substring(ts, 1, 10))) = substring(ts, 1, 10)",
    _identifier("app_id", 1, 128, app=True),
    _identifier("environment", 1, 64),
    "isValidUTF8(provider) AND lengthUTF8(provider) BETWEEN 1 AND 64",
    _identifier("model", 1, 256),
    _opt_version("model_version"),
    _opt_version("prompt_version"),
    "length(input) <= 10000",
    "arrayAll(m -> isValidUTF8(m.role) AND lengthUTF8(m.role) BETWEEN 1 AND 64 AND "
    + _MESSAGE_TEXT_OK.format(v="m.role") + ", input)",
    "arrayAll(m -> isNull(m.content) OR (isValidUTF8(assumeNotNull(m.content)) AND "
    "lengthUTF8(assumeNotNull(m.content)) <= 1000000 AND " + _MESSAGE_TEXT_OK.format(v="assumeNotNull(m.content)")
    + "), input)",
    "arrayAll(m -> isNull(m.name) OR (isValidUTF8(assumeNotNull(m.name)) AND "
    "lengthUTF8(assumeNotNull(m.name)) <= 1024 AND " + _MESSAGE_TEXT_OK.format(v="assumeNotNull(m.name)")
    + "), input)",
    _opt_text("prompt", 1_000_000),
    _opt_text("output", 1_000_000),
    _opt_int("tokens_in", 0, 100_000_000),
    _opt_int("tokens_out", 0, 100_000_000),
    _opt_int("tokens_cache_read", 0, 100_000_000),
    _opt_int("tokens_cache_write", 0, 100_000_000),
    _opt_int("tokens_reasoning", 0, 100_000_000),
    _opt_number("latency_ms", 0, 86_400_000),
    _opt_number("ttft_ms", 0, 86_400_000),
    "status IN ('ok', 'error')",
    _opt_text("error", 1_000_000),
    _opt_number("cost_usd", 0, None),
    _opt_text("user_id", 1024),
    _opt_text("session_id", 1024),
    _opt_text("trace_id", 64),
    _opt_text("span_id", 32),
    _texts("tags", 1024, 256),
    # A key given twice: orjson keeps the last, a Map both; such records go the slow way.
    "length(metadata) <= 256 AND length(arrayDistinct(mapKeys(metadata))) = length(metadata)",
    "arrayAll(k -> isValidUTF8(k) AND lengthUTF8(k) <= 1024, mapKeys(metadata))",
    "arrayAll(v -> isValidUTF8(v) AND lengthUTF8(v) <= 1024, mapValues(metadata))",
    # rows._call_row: int() of the redaction count; anything but plain digits goes the slow way.
    "match(metadata['lookout.pii_redactions'], '^[0-9]{0,9}$')",
    "isNull(context) OR " + _texts("variantElement(context, 'Array(String)')", 1_000_000, 1_000_000_000),
    _opt_text("reference", 1_000_000),
    "isNull(logprobs) OR (length(variantElement(logprobs, 'Array(Float64)')) <= 1000000 AND "
    "arrayAll(x -> NOT isNaN(x) AND NOT isInfinite(x) AND abs(x) <= 3.4e38, "
    "variantElement(logprobs, 'Array(Float64)')))",
)


def _message_json(m: str) -> str:
    # orjson.dumps(m.model_dump(exclude_none=True)): role, then content and name when set.
    return (f"concat('{{\"role\":', {_json_string(f'{m}.role')}, "
            f"if(isNull({m}.content), '', concat(',\"content\":', {_json_string(f'assumeNotNull({m}.content)')})), "
            f"if(isNull({m}.name), '', concat(',\"name\":', {_json_string(f'assumeNotNull({m}.name)')})), '}}')")


# rows._call_row, column by column.
_CALL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "event_id"),
    ("ts", "toDateTime64(parseDateTime64BestEffort(ts, 6, 'UTC'), 3, 'UTC')"),
    ("app_id", "app_id"),
    ("environment", "environment"),
    ("provider", "provider"),
    ("model", "model"),
    ("model_version", "ifNull(model_version, '')"),
    ("prompt_version", "ifNull(prompt_version, '')"),
    ("input", f"if(empty(input), '', concat('[', arrayStringConcat(arrayMap(m -> {_message_json('m')}, input), ','),"
              " ']'))"),
    ("prompt", "ifNull(prompt, '')"),
    ("output", "ifNull(output, '')"),
    ("tokens_in", "CAST(tokens_in, 'Nullable(UInt64)')"),
    ("tokens_out", "CAST(tokens_out, 'Nullable(UInt64)')"),
    ("tokens_cache_read", "CAST(tokens_cache_read, 'Nullable(UInt64)')"),
    ("tokens_cache_write", "CAST(tokens_cache_write, 'Nullable(UInt64)')"),
    ("tokens_reasoning", "CAST(tokens_reasoning, 'Nullable(UInt64)')"),
    ("latency_ms", "latency_ms"),
    ("ttft_ms", "ttft_ms"),
    ("status", "status"),
    ("error", "ifNull(error, '')"),
    ("cost_usd", "cost_usd"),
    ("cost_source", "multiIf(isNull(cost_usd), 'unknown', mapContains(metadata, 'lookout.price_table'), "
                    "'price_table', 'client')"),
    ("user_id", "ifNull(user_id, '')"),
    ("session_id", "ifNull(session_id, '')"),
    ("trace_id", "ifNull(trace_id, '')"),
    ("span_id", "ifNull(span_id, '')"),
    ("tags", "tags"),
    ("metadata", "metadata"),
    ("context", "variantElement(context, 'Array(String)')"),
    ("reference", "ifNull(reference, '')"),
    ("logprobs", "CAST(variantElement(logprobs, 'Array(Float64)'), 'Array(Float32)')"),
    ("pii_redactions", "toUInt32OrZero(metadata['lookout.pii_redactions'])"),
    ("ingested_at", "now64(3)"),
)


class Key(NamedTuple):
    """What the already-stored check needs of a record, read without decoding it. A tuple,
    not a frozen dataclass: one is made per record, and a frozen dataclass's __init__ took
    8 % of a draining sink's samples (py-spy)."""

    app_id: str
    id: str  # the id as ClickHouse prints a UUID: lowercase, with dashes
    day: date  # the UTC day of ts: the partition the row lands in


# The head of a record as ingest writes it (pydantic's serializer keeps field order). A
# record whose head reads otherwise (another producer, another order) goes the slow way; one
# that reads so but repeats a key later is refused by ClickHouse (a field given twice).
_CALL_HEAD = re.compile(
    rb'\{"schema":"llm_call/1","event_id":"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
    rb'[0-9a-fA-F]{12})","ts":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}(?:Z|[+-][0-9]{2}:[0-9]{2}))",'
    rb'"app_id":"([A-Za-z0-9._:-]{1,128})"'
)


def _call_key(value: bytes) -> Key | None:
    m = _CALL_HEAD.match(value)
    if m is None:
        return None
    ts = m.group(2).decode()
    try:
        if ts.endswith("Z") or ts.endswith("+00:00"):
            day = date(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]))
        else:
            day = datetime.fromisoformat(ts).astimezone(UTC).date()
    except ValueError:
        return None
    return Key(m.group(3).decode(), m.group(1).decode().lower(), day)


@dataclass(frozen=True)
class SqlRows:
    """One topic's records as rows of its table, built by ClickHouse."""

    table: str
    structure: str
    columns: tuple[tuple[str, str], ...]  # (column, SQL over the structure's fields)
    checks: tuple[str, ...]  # what every record must meet, else the server refuses the statement
    key: Callable[[bytes], Key | None]

    def statement(self, source: str, records: int, settings: Mapping[str, int | str] | None = None) -> str:
        """INSERT ... SELECT over `source` (JSONEachRow of `structure`: input() or file(), see
        carrier.py) that refuses the whole batch unless every record passes the checks and the
        records make exactly `records` rows (a record holding two JSON objects would make two).
        The parsing settings are the statement's own (SETTINGS), `settings` added to them."""
        names = ", ".join(c for c, _ in self.columns)
        # Columns go by position, without aliases: an alias named like a field would shadow
        # the field in the checks (ClickHouse aliases are visible everywhere in a query).
        values = ",\n    ".join(expr for _, expr in self.columns)
        ok = " AND ".join(f"({c})" for c in self.checks)
        return (
            f"INSERT INTO {self.table} ({names})\n"
            f"SELECT\n    {values}\n"
            f"FROM (SELECT * FROM (SELECT *, count() OVER () AS _records FROM {source})\n"
            f"      WHERE throwIf(NOT ({ok}) OR _records != {int(records)}, "
            f"'a record is not one the wire schema takes as it is: store this batch by validating it') = 0)\n"
            f"{settings_clause({**SETTINGS, **(settings or {})})}"
        )



CALLS = SqlRows("llm_calls", _CALL_STRUCTURE, _CALL_COLUMNS, _CALL_CHECKS, _call_key)
