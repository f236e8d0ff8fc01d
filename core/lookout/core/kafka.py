"""Kafka helpers: client options from settings, topic creation, a producer that knows
whether the broker supports idempotence, and the consumer loop that commits only after
its output is durable (at-least-once; storage dedups by id)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError

from . import consumer_metrics, topics
from .settings import CommonSettings

log = logging.getLogger(__name__)


class _ProbeFilter(logging.Filter):
    """Drops aiokafka's ERROR line about InitProducerId while `auto` mode probes the broker:
    the refusal is expected there (Tansu), and start_producer reports it as one INFO line."""

    def __init__(self) -> None:
        super().__init__()
        self.probing = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.probing and "InitProducerId" in str(record.msg))

    @contextlib.contextmanager
    def probe(self) -> Any:
        with self._lock:
            self.probing += 1
        try:
            yield
        finally:
            with self._lock:
                self.probing -= 1


_PROBE = _ProbeFilter()
logging.getLogger("aiokafka.producer.sender").addFilter(_PROBE)


def client_options(settings: CommonSettings) -> dict:
    """Connection options shared by producers, consumers and the admin client."""
    opts: dict = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        opts["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        if not settings.kafka_sasl_mechanism:
            raise ValueError("LOOKOUT_KAFKA_SASL_MECHANISM is required with a SASL security protocol")
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    return opts


async def ensure_topics(settings: CommonSettings, names: Iterable[str] = topics.ALL) -> None:
    """Create the topics Lookout uses if they are missing (idempotent)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(topics.resolve(settings.topic_prefix, n), settings.kafka_topic_partitions,
                     settings.kafka_topic_replication)
            for n in names
            if topics.resolve(settings.topic_prefix, n) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def start_producer(settings: CommonSettings, **overrides) -> AIOKafkaProducer:
    """A started producer with acks=all; idempotent where the broker supports it.

    Tansu 0.6 rejects InitProducerId, which aiokafka sends at start when idempotence is
    on; in `auto` mode that start failure switches idempotence off (event-id dedup in
    storage still holds exactly-once there).
    """
    base: dict[str, Any] = dict(client_options(settings), acks="all", linger_ms=5, max_batch_size=1 << 20,
                max_request_size=8 << 20, request_timeout_ms=15000)
    base.update(overrides)
    mode = settings.kafka_idempotence
    if mode in ("auto", "on"):
        producer = AIOKafkaProducer(enable_idempotence=True, **base)
        try:
            with _PROBE.probe() if mode == "auto" else contextlib.nullcontext():
                await producer.start()
            return producer
        except KafkaError as exc:
            await producer.stop()
            if mode == "on":
                raise
            log.info("the broker does not support idempotent producers (%s: %s); producing without idempotence, "
                     "event-id dedup in storage keeps exactly-once (LOOKOUT_KAFKA_IDEMPOTENCE=off skips this check)",
                     type(exc).__name__, exc)
    producer = AIOKafkaProducer(enable_idempotence=False, **base)
    await producer.start()
    return producer


def is_idempotent(producer: AIOKafkaProducer) -> bool:
    """Whether the producer runs with idempotence (aiokafka keeps it in its transaction manager)."""
    return getattr(producer, "_txn_manager", None) is not None


@dataclass
class ConsumerStats:
    consumed: int = 0
    batches: int = 0
    commits: int = 0
    errors: int = 0
    # Commits refused because the group rebalanced under the batch: its records go to the
    # partition's new owner, whose handler sees them again (handlers are idempotent).
    commit_failures: int = 0


Handler = Callable[[list[ConsumerRecord]], Awaitable[None]]


class BatchFence(ConsumerRebalanceListener):
    """Holds a rebalance until the batch in hand is handled and its offsets committed.

    Without it, a worker losing a partition mid-batch commits too late (the commit is
    refused) while the new owner already replays the same records: both handle them at
    once. aiokafka calls on_partitions_revoked before it rejoins the group and keeps
    heartbeating meanwhile, so the batch's commit still counts. `inner` is the service's
    own listener, called after the fence."""

    def __init__(self, inner: ConsumerRebalanceListener | None = None, timeout_s: float = 120.0):
        self.inner = inner
        self.timeout_s = timeout_s
        self._idle = asyncio.Event()
        self._idle.set()
        # A revocation is waiting for the fence: a loop fetching ahead stops doing so.
        self.wanted = False

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def on_partitions_revoked(self, revoked) -> None:
        self.wanted = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.timeout_s)
        except TimeoutError:
            log.warning("batch still running after %.0f s at a rebalance; its records will be handled again "
                        "by their partitions' next owner", self.timeout_s)
        finally:
            self.wanted = False
        if self.inner is not None:
            await _maybe_await(self.inner.on_partitions_revoked(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        if self.inner is not None:
            await _maybe_await(self.inner.on_partitions_assigned(assigned))


async def _maybe_await(result: Any) -> None:
    # aiokafka takes listeners with plain or async methods; so does the fence.
    if inspect.isawaitable(result):
        await result


# The fence make_consumer subscribed each consumer with, for the loop that drives it, and
# the group it joined (with the prefix), for the loop's metrics.
_FENCES: weakref.WeakKeyDictionary[AIOKafkaConsumer, BatchFence] = weakref.WeakKeyDictionary()
_GROUPS: weakref.WeakKeyDictionary[AIOKafkaConsumer, str] = weakref.WeakKeyDictionary()


@dataclass(eq=False)  # hashed by identity: consumer_metrics.LAG holds loops in a WeakSet
class CommitAfterLoop:
    """Consumes batches and hands each to `handler`; commits the batch's offsets only
    after the handler returned, i.e. after its output was produced or stored. If the
    handler raises, nothing is committed and the batch is retried from the same
    offsets after a back-off (seek), so a crash at any point replays, never skips."""

    consumer: AIOKafkaConsumer
    handler: Handler
    max_records: int = 2000
    # Keep polling until max_records or until the batch's oldest record is this old (its
    # producer's timestamp; see linger_left_ms): fewer, larger batches downstream (inserts)
    # at a bounded extra latency.
    linger_ms: int = 0
    # While lagging (a full batch or more still on the topic): wait up to this long from the
    # first fetch for a full batch; None: linger_ms.
    lagging_linger_ms: int | None = None
    # Stop lingering once the batch holds this many bytes of values (0: no limit): records
    # are capped one by one, not their count, so a batch of large answers would otherwise
    # grow to max_records of them. A fetch already buffered can add up to fetch_max_bytes.
    max_bytes: int = 0
    poll_timeout_ms: int = 200
    retry_backoff_s: float = 1.0
    # Fetch (and decode) the next batch while the handler works on this one: for a handler
    # that waits on I/O with the interpreter lock released (the sink's insert), which
    # otherwise sat idle a third of the time while the loop fetched. The fence stays closed
    # over both batches; a rebalance waits for at most one more batch.
    prefetch: bool = False
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    # The consumer group, for the metrics' `group` label (consumer_metrics.py); default:
    # the group make_consumer gave the consumer.
    group: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    # (topic, partition) -> lag as of the last poll, replaced whole (read by /metrics threads).
    _lag: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            self.group = _GROUPS.get(self.consumer, "") or "(none)"

    def stop(self) -> None:
        self._stop.set()

    def lag_snapshot(self) -> dict[tuple[str, int], int]:
        return self._lag

    async def _observe_lag(self) -> None:
        """Lag per owned partition: the high watermark the last fetch reported minus the
        consumer's position (the next record it hands out). Clamped at 0: Tansu reports a
        high watermark below the end offset already committed (see consumer_metrics.py)."""
        lag: dict[tuple[str, int], int] = {}
        for tp in list(self.consumer.assignment()):
            try:
                high = self.consumer.highwater(tp)
                if high is None:  # nothing fetched from it yet
                    continue
                # position() returns at once for a partition with a position; one still
                # being reset (just assigned) is skipped until the next poll.
                position = await asyncio.wait_for(self.consumer.position(tp), 0.05)
            except (TimeoutError, IllegalStateError, AssertionError, KafkaError):
                continue
            lag[(tp.topic, tp.partition)] = max(0, high - position)
        self._lag = lag

    async def _fill(self) -> dict:
        batches = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        # Once a fetch, a fetch ahead included: the metrics' lag and the linger's `lagging`.
        await self._observe_lag()
        count = sum(len(p) for p in batches.values())
        if not count or not (self.linger_ms or self.lagging_linger_ms):
            return batches
        oldest = min(part[0].timestamp for part in batches.values() if part)
        wait_ms = linger_left_ms(
            self.linger_ms, self.linger_ms if self.lagging_linger_ms is None else self.lagging_linger_ms,
            lagging=sum(self._lag.values()) >= self.max_records - count,
            oldest_age_ms=time.time() * 1000 - oldest,
        )
        if wait_ms <= 0:
            return batches
        deadline = asyncio.get_running_loop().time() + wait_ms / 1000
        size = _value_bytes(batches) if self.max_bytes else 0
        while count < self.max_records and not self._stop.is_set() and not (self.max_bytes and size >= self.max_bytes):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            more = await self.consumer.getmany(timeout_ms=int(left * 1000), max_records=self.max_records - count)
            for tp, part in more.items():
                batches.setdefault(tp, []).extend(part)
                count += len(part)
            if self.max_bytes:
                size += _value_bytes(more)
        return batches

    async def run(self) -> None:
        fence = _FENCES.get(self.consumer)
        consumer_metrics.LAG.add(self)
        try:
            while not self._stop.is_set():
                # Fenced from the fetch on: records fetched before a revocation are handled
                # and committed before the group moves their partitions (a poll adds at most
                # poll_timeout_ms + linger_ms to a rebalance; fetching ahead, one batch more).
                async with fence.batch() if fence else contextlib.nullcontext():
                    batches = await self._fill()
                    while batches:
                        ahead = (asyncio.create_task(self._fill())
                                 if self.prefetch and not self._stop.is_set() and not (fence and fence.wanted)
                                 else None)
                        handled = await self._handle(batches, ahead)
                        batches = await ahead if ahead is not None and handled else {}
        finally:
            self._lag = {}
            consumer_metrics.LAG.discard(self)

    async def _handle(self, batches: dict, ahead: asyncio.Task | None = None) -> bool:
        """Handle and commit one batch; False when it was not (the handler failed, or the
        commit was refused), and then `ahead`, the next batch being fetched, is dropped:
        its partitions are set back to where this batch began, or where it begins."""
        # Partitions revoked between the fetch and now belong to another worker already.
        owned = self.consumer.assignment()
        batches = {tp: part for tp, part in batches.items() if part and tp in owned}
        records = [r for part in batches.values() for r in part]
        if not records:
            return True
        began = time.perf_counter()
        try:
            await self.handler(records)
        except asyncio.CancelledError:
            if ahead is not None:
                ahead.cancel()
            raise
        except Exception:
            self.stats.errors += 1
            consumer_metrics.ERRORS.labels(self.group).inc()
            log.exception("handler failed on %d records; will retry from the same offsets", len(records),
                          extra={"group": self.group})
            # After the fetch ahead has ended, or it would move a partition on past the seek.
            starts = {tp: part[0].offset for tp, part in (await _dropped(ahead)).items() if part}
            starts.update({tp: part[0].offset for tp, part in batches.items()})
            owned = self.consumer.assignment()
            for tp, offset in starts.items():
                if tp in owned:
                    self.consumer.seek(tp, offset)
            try:
                await asyncio.wait_for(self._stop.wait(), self.retry_backoff_s)
            except TimeoutError:
                pass
            return False
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self.stats.commit_failures += 1
            consumer_metrics.COMMIT_FAILURES.labels(self.group).inc()
            log.warning("commit of %d records refused after a rebalance (%s); their new owner handles them",
                        len(records), exc, extra={"group": self.group})
            # The group moved on: positions come from the committed offsets after it
            # rejoins; what was fetched ahead is not ours to handle.
            await _dropped(ahead)
            return False
        self.stats.consumed += len(records)
        self.stats.batches += 1
        self.stats.commits += 1
        consumer_metrics.RECORDS.labels(self.group).inc(len(records))
        consumer_metrics.BATCHES.labels(self.group).inc()
        consumer_metrics.BATCH_SECONDS.labels(self.group).observe(time.perf_counter() - began)
        return True


async def _dropped(ahead: asyncio.Task | None) -> dict:
    """The records a fetch ahead got (waited for: it may still be running), to drop."""
    if ahead is None:
        return {}
    try:
        return await ahead
    except Exception:
        log.exception("fetching ahead failed")
        return {}


def _value_bytes(batches: dict) -> int:
    return sum(r.serialized_value_size for part in batches.values() for r in part)


def linger_left_ms(linger_ms: int, lagging_linger_ms: int, *, lagging: bool, oldest_age_ms: float) -> float:
    """How much longer a batch just fetched waits to fill. Keeping up: until its oldest
    record is linger_ms old, so a record waits at most linger_ms in the loop even when it
    arrived while the previous batch was being handled (it is already old: the batch goes at
    once, with whatever came meanwhile). Lagging (a full batch or more still on the topic,
    the rows already late): lagging_linger_ms, since each handler call has a fixed cost and
    records fetched while a batch is handled arrive in fetch-sized pieces, so the age rule
    alone would hand over batches of a few hundred records. The age comes from the
    producer's clock: clamped to [0, linger_ms], a skewed clock only shortens the linger to
    none or leaves it as if the record were new."""
    if lagging:
        return lagging_linger_ms
    return linger_ms - min(max(oldest_age_ms, 0.0), float(linger_ms))


def loop_problem(task: asyncio.Task | None) -> str | None:
    """Why a consumer loop task is not serving (for /readyz), or None while it runs."""
    if task is None:
        return "not started"
    if task.done():
        return f"consumer loop ended: {'cancelled' if task.cancelled() else task.exception() or 'stopped'}"
    return None


async def finish(loop: CommitAfterLoop | None, task: asyncio.Task | None, grace_s: float) -> None:
    """Let a consumer loop finish the batch in hand (output stored or acked, offsets
    committed) and wait for it; past `grace_s` it is cancelled, and the batch is replayed
    by whoever consumes the partition next. An error that ended the loop is logged, so
    the caller still closes its clients."""
    if loop is not None:
        loop.stop()
    if task is None:
        return
    try:
        await asyncio.wait_for(task, grace_s)
    except TimeoutError:
        task.cancel()
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # our caller is being cancelled, not the loop
    except Exception:
        log.exception("consumer loop ended with an error")


def make_consumer(
    settings: CommonSettings, group_id: str | None, *names: str, listener: ConsumerRebalanceListener | None = None,
    **overrides,
) -> AIOKafkaConsumer:
    """A consumer that commits by hand. The group id carries LOOKOUT_TOPIC_PREFIX like the
    topics do, so two installs sharing a cluster never share a consumer group. A group
    consumer is subscribed through a BatchFence (wrapping `listener`), which the
    CommitAfterLoop driving it closes around each batch."""
    opts: dict[str, Any] = dict(
        client_options(settings),
        group_id=f"{settings.topic_prefix}{group_id}" if group_id else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    opts.update(overrides)
    if not group_id:
        if listener is not None:
            raise ValueError("a rebalance listener needs a consumer group")
        return AIOKafkaConsumer(*names, **opts)
    consumer = AIOKafkaConsumer(**opts)
    _GROUPS[consumer] = opts["group_id"]
    fence = _FENCES[consumer] = BatchFence(listener)
    if names:
        consumer.subscribe(list(names), listener=fence)
    return consumer
