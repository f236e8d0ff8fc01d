"""Storing a batch of records: each topic's records into its table, replays skipped, a
record that cannot be parsed or stored dead-lettered with its error (the rest of its batch
is stored). Rows whose (app_id, id) is already stored are skipped (two apps may pick the
same id; each keeps its row) and tables are ReplacingMergeTree.

Two ways to store, one result. The fast way, for tables with SQL rows (sql_rows.py;
llm_calls): Python reads only each record's head (app, id, day) for the already-stored
check, one bounded query per batch, and ClickHouse parses the rest of the batch's JSON and
inserts it in one statement. That statement costs ClickHouse ~35 ms to analyse whatever
its size, more than validating a few hundred records in Python, so a batch with fewer than
`sql_min_records` of a table's records takes the validating way too. The validating way,
for the other tables, small batches and a batch the server refuses: pydantic decodes each
record (a poison one is dead-lettered with its error), rows.py builds the rows, and
clickhouse-connect inserts them; a batch insert that fails is retried row by row, so one
bad row costs only itself.

Score and vote records that do not name their call's model_version (reviewer votes,
producers that never saw the call) get it from the stored call, so the per-version rollup
files them under the right version.

Runs on a worker thread (the sink's handler hands it the batch): parsing and validating
thousands of records is CPU work the event loop must not do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date

import orjson
from aiokafka import ConsumerRecord
from clickhouse_connect.driver.exceptions import OperationalError
from prometheus_client import Counter

from lookout.core import topics
from lookout.core.dead_letters import Batch
from lookout.core.events import TOPIC_SCHEMAS
from lookout.core.session import Session

from . import sql_rows
from .carrier import SOURCE, Carrier, settings_clause
from .rows import TABLES, TableSpec

log = logging.getLogger(__name__)

STORED = Counter("lookout_sink_rows_stored_total", "Rows inserted into ClickHouse", ["table"])
SKIPPED = Counter("lookout_sink_replays_skipped_total", "Records whose id was already stored", ["table"])
VALIDATED = Counter(
    "lookout_sink_validated_records_total",
    "Records of a table with SQL rows that were stored the validating way instead, by why: 'refused' (the server "
    "refused their batch), 'head' (a record head the sink does not read without decoding), 'small' (fewer records "
    "than LOOKOUT_SINK_SQL_MIN_RECORDS in the batch: cheaper to validate)",
    ["table", "reason"],
)


@dataclass
class _Pending:
    spec: TableSpec
    rows: list[dict] = field(default_factory=list)
    records: list[ConsumerRecord] = field(default_factory=list)


class Store:
    def __init__(self, session: Session, topic_prefix: str = "", *, chdb: bool = False, fast: bool = True,
                 nice: int = 0, sql_min_records: int = 0):
        self.session = session
        self.topic_prefix = topic_prefix
        # chdb reads a batch and its keys from a file; a server from the request (carrier.py).
        self.chdb = chdb
        self.carrier = Carrier(session, chdb)
        self.fast = fast  # False: every batch the validating way (tests compare the two)
        # Fewer of a table's records than this in a batch: validated in Python (settings.sink_sql_min_records).
        self.sql_min_records = sql_min_records
        # ClickHouse's threads run this sink's statements at this nice value (settings.sink_insert_nice).
        self.statement_settings: dict[str, int | str] = {"os_thread_priority": nice} if nice else {}

    def write(self, batch: Batch) -> None:
        """Store every record of the batch; the unstorable ones become its dead letters.
        Raises OperationalError while ClickHouse is away (the batch is retried)."""
        by_topic: dict[str, list[ConsumerRecord]] = {}
        for record in batch.records:
            by_topic.setdefault(topics.base_name(self.topic_prefix, record.topic), []).append(record)
        validate: list[ConsumerRecord] = []
        for base, records in by_topic.items():
            spec = TABLES.get(base)
            if self.fast and spec is not None and spec.sql is not None:
                if len(records) >= self.sql_min_records:
                    validate.extend(self._store_fast(spec, spec.sql, records))
                    continue
                VALIDATED.labels(spec.table, "small").inc(len(records))
            validate.extend(records)
        if validate:
            for slot in self._parse(validate, batch).values():
                self._store(slot, batch)

    # -- the fast way: ClickHouse parses --------------------------------------------------

    def _store_fast(
        self, spec: TableSpec, sql: sql_rows.SqlRows, records: list[ConsumerRecord]
    ) -> list[ConsumerRecord]:
        """Store the records ClickHouse can take as they are; the ones to validate instead."""
        heads: dict[tuple[str, str], tuple[sql_rows.Key, ConsumerRecord]] = {}
        unread: list[ConsumerRecord] = []
        for record in records:
            key = sql.key(record.value) if record.value else None
            if key is None:
                unread.append(record)
            else:
                heads.setdefault((key.app_id, key.id), (key, record))  # a key twice in a batch: once
        if unread:
            VALIDATED.labels(spec.table, "head").inc(len(unread))
        if not heads:
            return unread
        stored = self._stored(spec, heads, {key.day for key, _ in heads.values()})
        if stored:
            SKIPPED.labels(spec.table).inc(len(stored))
        fresh = [record for k, (_, record) in heads.items() if k not in stored]
        if not fresh:
            return unread
        try:
            self._insert_sql(sql, [r.value for r in fresh])  # type: ignore[misc]
        except OperationalError:
            raise  # ClickHouse away: not the data's fault, so retry the batch later
        except Exception as exc:
            # Rows of blocks that passed the checks may be in (a batch larger than one block):
            # the validating way's already-stored check skips those.
            log.info("ClickHouse refused %d records for %s as they are (%s); validating them instead",
                     len(fresh), spec.table, str(exc).split("\n")[0][:300])
            VALIDATED.labels(spec.table, "refused").inc(len(fresh))
            return unread + fresh
        STORED.labels(spec.table).inc(len(fresh))
        return unread

    def _insert_sql(self, sql: sql_rows.SqlRows, values: list[bytes]) -> None:
        # The records as they came off Kafka, joined once: ClickHouse parses them.
        self.carrier.insert(sql.statement(SOURCE, len(values), self.statement_settings), b"\n".join(values),
                            "JSONEachRow", sql.structure)

    def _stored(self, spec: TableSpec, keys: Iterable[tuple], days: set[date]) -> set[tuple]:
        """Which of these keys ((app_id, id) or (id,), ids as text) are stored already.

        One query per batch, bounded: it reads only the partitions (days) of the batch's
        rows, the primary-key ranges of its apps and, within those, the granules whose id
        bloom filter may hold one of the ids; it returns at most one row per key. The keys
        go as data (carrier.py), not as SQL: parsing 5 000 tuples written out took longer
        than the batch's insert."""
        keys = list(keys)
        if not keys:
            return set()
        id_col = spec.id_column
        data = b"\n".join(orjson.dumps(list(key)) for key in keys)
        parameters: dict = {"days": sorted(days), "n": len(keys)}
        if spec.app_scoped:
            parameters["apps"] = sorted({app for app, _ in keys})
            structure = "app_id String, id UUID"
            condition = (f"app_id IN {{apps:Array(String)}} AND {id_col} IN (SELECT id FROM {SOURCE}) "
                         f"AND (app_id, {id_col}) IN (SELECT app_id, id FROM {SOURCE})")
        else:
            structure = "id UUID"
            condition = f"{id_col} IN (SELECT id FROM {SOURCE})"
        return {
            tuple(str(v) for v in r)
            for r in self.carrier.query(
                f"SELECT DISTINCT {', '.join(spec.dedup_key)} FROM {spec.table} "
                f"WHERE toDate(ts) IN {{days:Array(Date)}} AND {condition} LIMIT {{n:UInt32}}"
                + (f" {settings_clause(self.statement_settings)}" if self.statement_settings else ""),
                data, "JSONCompactEachRow", structure, parameters,
            )
        }

    # -- the validating way ---------------------------------------------------------------

    def _parse(self, records: list[ConsumerRecord], batch: Batch) -> dict[str, _Pending]:
        pending: dict[str, _Pending] = {}
        for record in records:
            base = topics.base_name(self.topic_prefix, record.topic)
            try:
                spec = TABLES.get(base)
                if spec is None:
                    raise ValueError(f"no table for topic {base}")
                if record.value is None:
                    raise ValueError("record has no value (a tombstone)")
                row = spec.to_row(TOPIC_SCHEMAS[base].from_bytes(record.value))
            except Exception as exc:
                batch.dead_letter(record, exc)
                continue
            slot = pending.setdefault(spec.table, _Pending(spec))
            slot.rows.append(row)
            slot.records.append(record)
        return pending

    def _store(self, slot: _Pending, batch: Batch) -> None:
        rows, records = self._without_stored(slot)
        if not rows:
            return
        self._copy_from_calls(slot.spec, rows)
        try:
            self._insert(slot.spec.table, rows)
        except OperationalError:
            raise  # ClickHouse away: not the data's fault, so retry the batch later
        except Exception as exc:
            log.warning("batch insert into %s failed (%s); storing row by row", slot.spec.table, exc)
            for row, record in zip(rows, records, strict=True):
                try:
                    self._insert(slot.spec.table, [row])
                except OperationalError:
                    raise
                except Exception as row_exc:
                    batch.dead_letter(record, row_exc)

    def _copy_from_calls(self, spec: TableSpec, rows: list[dict]) -> None:
        """Fill the call's model, version and environment into score and vote rows whose
        producer did not send them (reviewer votes, older judges), so the per-version
        rollup files them under their call's version. One query per batch that has any;
        the call is the one of the row's own app (another app may use the same event id);
        a call not stored (yet) leaves them empty."""
        fields = spec.call_fields
        missing = [row for row in rows if fields and not row["environment"]]
        if not missing:
            return
        columns = ", ".join(f"any({'ts' if f == 'call_ts' else f})" for f in fields)
        pairs = list({(r["app_id"], str(r["event_id"])) for r in missing})
        found = {
            (r[0], r[1]): r[2:]
            for r in self.session.query(
                # Scores and votes come after their call; the day covers producers' clock skew.
                f"SELECT app_id, event_id, {columns} FROM llm_calls "
                "WHERE ts <= {hi:DateTime64(3, 'UTC')} + INTERVAL 1 DAY "
                "AND app_id IN {apps:Array(String)} AND (app_id, event_id) IN {pairs:Array(Tuple(String, UUID))} "
                "GROUP BY app_id, event_id",
                {"hi": max(r["ts"] for r in missing), "apps": list({a for a, _ in pairs}), "pairs": pairs},
            ).result_rows
        }
        for row in missing:
            values = found.get((row["app_id"], row["event_id"]))
            if values is not None:
                row.update(zip(fields, values, strict=True))

    def _insert(self, table: str, rows: list[dict]) -> None:
        columns = list(rows[0])
        self.session.insert(table, [[row[c] for c in columns] for row in rows], column_names=columns,
                            **({"settings": self.statement_settings} if self.statement_settings else {}))
        STORED.labels(table).inc(len(rows))

    def _without_stored(self, slot: _Pending) -> tuple[list[dict], list[ConsumerRecord]]:
        """Drop rows whose key repeats in the batch or is already stored (a replay after a
        crash between insert and commit, or a client re-posting a batch). The key is
        (app_id, id) where rows carry an app: another app's row with the same id is not a
        replay and is stored apart."""
        key_columns = slot.spec.dedup_key
        if not key_columns:
            return slot.rows, slot.records
        seen: set[tuple] = set()
        rows, records = [], []
        for row, record in zip(slot.rows, slot.records, strict=True):
            key = tuple(str(row[c]) for c in key_columns)
            if key not in seen:
                seen.add(key)
                rows.append(row)
                records.append(record)
        stored = self._stored(slot.spec, seen, {r["ts"].astimezone(UTC).date() for r in rows})
        if stored:
            SKIPPED.labels(slot.spec.table).inc(len(stored))
            keep = [
                (row, rec)
                for row, rec in zip(rows, records, strict=True)
                if tuple(str(row[c]) for c in key_columns) not in stored
            ]
            rows = [row for row, _ in keep]
            records = [rec for _, rec in keep]
        return rows, records
