"""ClickHouse side of the drift service: the samples (embeddings and token features) of
every sampled event, the window state per stream, reference resets, which events each
tested window compared, and the stored results. The tables are core migration
0005_drift. Blocking calls: the service runs them in a worker thread. Every query goes
through the service's one Session, so the consumer's writes, the API's reads and the
report builder take turns on the client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import orjson

from lookout.core.session import Session

from .features import Sample
from .windows import Policy, StreamKey, Window

_SAMPLE_COLUMNS = [
    "event_id", "ts", "app_id", "model", "prompt_version", "source", "reference_id", "encoder",
    "prompt_embedding", "response_embedding", "prompt_chars", "response_chars", "prompt_tokens",
    "response_tokens", "prompt_token_ids", "response_token_ids", "empty_or_refused",
]
_READ_COLUMNS = [*_SAMPLE_COLUMNS[:1], "ts", *_SAMPLE_COLUMNS[8:]]


@dataclass(frozen=True)
class ResetRequest:
    version: int
    key: StreamKey
    policy: Policy
    ts_from: datetime | None = None
    ts_to: datetime | None = None
    upload_reference: str = ""


@dataclass(frozen=True)
class WindowEvents:
    """Which events one tested window compared (a drift_windows row)."""

    reference_source: str  # 'stream' or 'upload:<id>'
    reference: list[uuid.UUID]
    current: list[uuid.UUID]


_RESULT_COLUMNS = (
    "result_id, ts, app_id, model, prompt_version, window_start, window_end, signal, method, statistic, p_value, "
    "threshold, drifted, reference_size, current_size, reference_id, examples, details"
)


class DriftStore:
    def __init__(self, session: Session):
        self.session = session

    # --- samples -------------------------------------------------------------------
    def save_samples(
        self, rows: Iterable[tuple[StreamKey, Sample]], encoder: str, source: str = "stream", reference_id: str = ""
    ) -> int:
        data = [self._row(key, s, encoder, source, reference_id) for key, s in rows]
        if data:
            self.session.insert("drift_embeddings", data, column_names=_SAMPLE_COLUMNS)
        return len(data)

    @staticmethod
    def _row(key: StreamKey, s: Sample, encoder: str, source: str, reference_id: str) -> list[Any]:
        def vec(v: np.ndarray | None) -> list[float]:
            return [] if v is None else v.astype(np.float32).tolist()

        return [
            s.event_id, s.ts, key.app_id, key.model, key.prompt_version, source, reference_id, encoder,
            vec(s.prompt_embedding), vec(s.response_embedding), s.prompt_chars, s.response_chars,
            s.prompt_tokens, s.response_tokens, s.prompt_token_ids.tolist(), s.response_token_ids.tolist(),
            int(s.empty_or_refused),
        ]

    def _query_samples(self, where: str, parameters: dict[str, Any]) -> list[Sample]:
        # LIMIT 1 BY event_id: rows of a replay not merged away yet count once.
        rows = self.session.query(
            f"SELECT {', '.join(_READ_COLUMNS)} FROM drift_embeddings WHERE {where} "
            "ORDER BY ts, event_id LIMIT 1 BY event_id",
            parameters=parameters,
        ).result_rows
        return [self._sample(r) for r in rows]

    @staticmethod
    def _sample(r: Sequence[Any]) -> Sample:
        (event_id, ts, p_emb, r_emb, p_chars, r_chars, p_tok, r_tok, p_ids, r_ids, empty) = r
        return Sample(
            event_id=_uuid(event_id),
            ts=ts if ts.tzinfo else ts.replace(tzinfo=UTC),  # the driver returns naive UTC
            prompt_chars=int(p_chars), response_chars=int(r_chars),
            prompt_tokens=int(p_tok), response_tokens=int(r_tok),
            empty_or_refused=bool(empty),
            prompt_token_ids=np.asarray(p_ids, dtype=np.uint32),
            response_token_ids=np.asarray(r_ids, dtype=np.uint32),
            prompt_embedding=np.asarray(p_emb, dtype=np.float32) if len(p_emb) else None,
            response_embedding=np.asarray(r_emb, dtype=np.float32) if len(r_emb) else None,
        )

    def _stream_filter(self, key: StreamKey) -> tuple[str, dict[str, Any]]:
        return ("app_id = {app:String} AND model = {model:String} AND prompt_version = {pv:String}",
                {"app": key.app_id, "model": key.model, "pv": key.prompt_version})

    def load_samples(self, key: StreamKey, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Sample]:
        if not event_ids:
            return {}
        where, params = self._stream_filter(key)
        found = self._query_samples(f"{where} AND source = 'stream' AND event_id IN {{ids:Array(UUID)}}",
                                    {**params, "ids": [str(i) for i in event_ids]})
        return {s.event_id: s for s in found}

    def load_range(self, key: StreamKey, ts_from: datetime, ts_to: datetime, limit: int) -> list[Sample]:
        """A pinned reference from stored history: a uniform sample (by event-id hash) of
        the stream's events in [ts_from, ts_to]."""
        where, params = self._stream_filter(key)
        rows = self.session.query(
            f"SELECT {', '.join(_READ_COLUMNS)} FROM drift_embeddings WHERE {where} AND source = 'stream' "
            "AND ts BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
            "ORDER BY cityHash64(event_id) LIMIT 1 BY event_id LIMIT {n:UInt32}",
            parameters={**params, "lo": ts_from, "hi": ts_to, "n": limit},
        ).result_rows
        return sorted((self._sample(r) for r in rows), key=lambda s: (s.ts, s.event_id))

    def load_upload(self, key: StreamKey, reference_id: str) -> list[Sample]:
        where, params = self._stream_filter(key)
        return self._query_samples(f"{where} AND source = 'upload' AND reference_id = {{ref:String}}",
                                   {**params, "ref": reference_id})

    # --- windows -------------------------------------------------------------------
    def save_windows(self, windows: Iterable[Window]) -> None:
        rows = [
            [w.key.app_id, w.key.model, w.key.prompt_version, w.reference_id, w.index, w.reference_source,
             [s.event_id for s in w.reference], [s.event_id for s in w.current]]
            for w in windows
        ]
        if rows:
            self.session.insert(
                "drift_windows", rows,
                column_names=["app_id", "model", "prompt_version", "reference_id", "window_index",
                              "reference_source", "reference_events", "current_events"],
            )

    def load_window(self, key: StreamKey, reference_id: str, index: int) -> WindowEvents | None:
        where, params = self._stream_filter(key)
        rows = self.session.query(
            "SELECT reference_source, reference_events, current_events FROM drift_windows FINAL "
            f"WHERE {where} AND reference_id = {{ref:String}} AND window_index = {{index:UInt32}} LIMIT 1",
            parameters={**params, "ref": reference_id, "index": index},
        ).result_rows
        if not rows:
            return None
        source, reference, current = rows[0]
        return WindowEvents(source, [_uuid(i) for i in reference], [_uuid(i) for i in current])

    def load_window_samples(self, key: StreamKey, events: WindowEvents) -> tuple[list[Sample], list[Sample]]:
        """Both sides of a window, in the order the window held them; events no longer
        stored (past retention) are missing from the lists."""
        if events.reference_source.startswith("upload:"):
            upload_id = events.reference_source.split(":", 1)[1]
            reference = {s.event_id: s for s in self.load_upload(key, upload_id)}
        else:
            reference = self.load_samples(key, events.reference)
        current = self.load_samples(key, events.current)
        return ([reference[i] for i in events.reference if i in reference],
                [current[i] for i in events.current if i in current])

    # --- stream state --------------------------------------------------------------
    def save_states(self, states: Sequence[tuple[StreamKey, int, dict[str, Any]]]) -> None:
        if not states:
            return
        self.session.insert(
            "drift_stream_state",
            [[str(k), k.app_id, k.model, k.prompt_version, version, orjson.dumps(state).decode()]
             for k, version, state in states],
            column_names=["stream", "app_id", "model", "prompt_version", "version", "state"],
        )

    def load_states(self) -> list[tuple[StreamKey, dict[str, Any]]]:
        rows = self.session.query(
            "SELECT app_id, model, prompt_version, argMax(state, version) FROM drift_stream_state "
            "GROUP BY stream, app_id, model, prompt_version"
        ).result_rows
        return [(StreamKey(a, m, pv), orjson.loads(s)) for a, m, pv, s in rows]

    # --- reference resets ----------------------------------------------------------
    def add_reset(self, request: ResetRequest) -> None:
        k = request.key
        self.session.insert(
            "drift_reference_resets",
            [[request.version, str(k), k.app_id, k.model, k.prompt_version, request.policy, request.ts_from,
              request.ts_to, request.upload_reference]],
            column_names=["version", "stream", "app_id", "model", "prompt_version", "policy", "ts_from", "ts_to",
                          "upload_reference"],
        )

    def resets_since(self, version: int) -> list[ResetRequest]:
        rows = self.session.query(
            "SELECT DISTINCT version, app_id, model, prompt_version, policy, ts_from, ts_to, upload_reference "
            "FROM drift_reference_resets WHERE version > {v:UInt64} ORDER BY version",
            parameters={"v": version},
        ).result_rows
        # Written by add_reset from a validated request: one of the policies.
        return [ResetRequest(v, StreamKey(a, m, pv), cast(Policy, pol), lo, hi, up)
                for v, a, m, pv, pol, lo, hi, up in rows]

    # --- results (stored by the sink) ------------------------------------------------
    def list_results(
        self, app_id: str | None, model: str | None, signal: str | None, since: datetime | None, limit: int,
        drifted: bool | None = None,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["1"]
        params: dict[str, Any] = {"n": limit}
        for column, value in (("app_id", app_id), ("model", model), ("signal", signal)):
            if value:
                where.append(f"{column} = {{{column}:String}}")
                params[column] = value
        if since:
            where.append("ts >= {since:DateTime64(3, 'UTC')}")
            params["since"] = since
        if drifted is not None:
            where.append("drifted = {drifted:UInt8}")
            params["drifted"] = int(drifted)
        result = self.session.query(
            f"SELECT {_RESULT_COLUMNS} FROM drift_results FINAL WHERE {' AND '.join(where)} "
            "ORDER BY ts DESC, signal LIMIT {n:UInt32}",
            parameters=params,
        )
        return [_result_row(row) for row in result.named_results()]

    def get_result(self, result_id: uuid.UUID) -> dict[str, Any] | None:
        result = self.session.query(
            f"SELECT {_RESULT_COLUMNS} FROM drift_results FINAL WHERE result_id = {{id:UUID}} LIMIT 1",
            parameters={"id": str(result_id)},
        )
        rows = [_result_row(row) for row in result.named_results()]
        return rows[0] if rows else None


def _result_row(row: dict[str, Any]) -> dict[str, Any]:
    row["drifted"] = bool(row["drifted"])
    row["details"] = orjson.loads(row["details"]) if row["details"] else {}
    return row


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

