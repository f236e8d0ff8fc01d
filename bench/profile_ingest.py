"""Where an ingest worker's time goes, per stage, in µs of CPU per event, on the pipeline
benchmark's own events (bench_pipeline.make_events: ~1 KB, an e-mail and numbers in each,
PII mask on, gzip batches of 500), in this process: no HTTP, no Kafka.

    .venv/bin/python -m bench.profile_ingest [--events 20000] [--repeat 7] [--cprofile]

Each stage is timed on its own over every batch (best of --repeat), then the whole
`prepare.events` as a worker runs it, and the pickling of a job's arguments and result
(what crosses to and from a worker process). --cprofile prints the top functions of the
whole step instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import pickle
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from pydantic import TypeAdapter

from bench.bench_pipeline import make_events
from lookout.core.auth import ApiKey
from lookout.core.events import LlmCall
from lookout.ingest import intake, prepare
from lookout.ingest.enrich import Enricher
from lookout.ingest.publisher import encode
from lookout.ingest.settings import IngestSettings


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    events = make_events(args.events, "bench")
    n = len(events)
    raw = [orjson.dumps({"events": events[i : i + 500]}) for i in range(0, n, 500)]
    bodies = [gzip.compress(b, 1) for b in raw]
    settings = IngestSettings(pii_secret="bench-pii-secret-0123456789", pii_mode="mask")
    enricher = Enricher.from_settings(settings)
    key = ApiKey(key_id="k", app_id="*", scopes=frozenset({"ingest"}), name="bench", created_at=datetime.now(UTC))
    limits = {"max_bytes": settings.max_body_bytes, "max_events": settings.max_batch_events}

    def whole() -> list[prepare.Prepared]:
        return [prepare.events(enricher, b, "application/json", "gzip", key=key, **limits) for b in bodies]

    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        whole()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return

    us = 1e6 / n
    rows: list[tuple[str, float]] = []
    rows.append(("gunzip", best(args.repeat, lambda: [intake.gunzip(b, limits["max_bytes"]) for b in bodies])))
    rows.append(("JSON parse (orjson)", best(args.repeat, lambda: [orjson.loads(b) for b in raw])))
    rows.extend(_stage_rows(args.repeat, raw, enricher))
    rows.append(("whole prepare.events", best(args.repeat, whole)))
    results = whole()
    job = (b"x" * len(bodies[0]), "application/json", "gzip")
    rows.append(("pickle args + unpickle (body bytes, key)", best(args.repeat, lambda: [
        pickle.loads(pickle.dumps((prepare.events, (body, *job[1:]), {"key": key, **limits}), -1))
        for body in bodies])))
    rows.append(("pickle result + unpickle (records)", best(args.repeat, lambda: [
        pickle.loads(pickle.dumps(r, -1)) for r in results])))
    for name, seconds in rows:
        print(f"{name:44s} {seconds * us:7.1f} µs/event")


_BATCH = TypeAdapter(dict[str, list[LlmCall]])


def _stage_rows(repeat: int, raw: list[bytes], enricher: Enricher) -> list[tuple[str, float]]:
    """validation, enrichment (PII, pseudonyms, price) and serialisation, each alone."""
    from lookout.core.pii import redaction_updates

    payloads = [orjson.loads(b) for b in raw]

    def validated() -> list[list]:
        return [[c for _, c in intake.validate_events(p, max_events=5000)[0]] for p in payloads]

    def batch_validated() -> list[dict[str, list[LlmCall]]]:
        # One pydantic call on the body's bytes (what FINDINGS.md compared): no faster here.
        return [_BATCH.validate_json(b) for b in raw]

    rows = [("pydantic validation, per event (parsed)", best(repeat, validated)),
            ("pydantic validation, one call (bytes)", best(repeat, batch_validated))]
    batches = validated()
    policy = enricher.policy
    rows.append(("PII scan + redact (redaction_updates)", best(repeat, lambda: [
        redaction_updates(c, policy.for_app(c.app_id)) for calls in batches for c in calls])))
    rows.append(("enrich whole (PII, pseudonyms, price)", best(repeat, lambda: [
        enricher.updates(c) for calls in batches for c in calls])))
    for calls in batches:
        for c in calls:
            enricher.apply(c)
    rows.append(("serialise (encode: to_bytes + key)", best(repeat, lambda: [encode(calls) for calls in batches])))
    return rows


if __name__ == "__main__":
    main()
