"""Does chdb's query call release the GIL? The main thread times a tight Python loop alone,
then while a second thread runs large chdb inserts back to back. If chdb held the GIL, the
loop would stop for a whole insert (the longest pause would be an insert's duration); if it
releases it, the loop only loses the CPU ClickHouse's own threads take.

Run: `.venv/bin/python -m bench.bench_chdb_gil` (and under `taskset -c 0` for one core).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time


def spin(seconds: float) -> tuple[float, float]:
    """Loop iterations per second and the longest pause between two iterations (s)."""
    n, worst = 0, 0.0
    last = time.perf_counter()
    end = last + seconds
    while (now := time.perf_counter()) < end:
        n += 1
        worst = max(worst, now - last)
        last = now
    return n / seconds, worst


def main() -> None:
    import chdb

    conn = chdb.connect(tempfile.mkdtemp(prefix="lookout-gil-"))
    conn.query("CREATE TABLE t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    alone, pause_alone = spin(2)
    stop = threading.Event()
    inserts: list[float] = []

    def work() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            conn.query("INSERT INTO t SELECT number, repeat('x', 200) FROM numbers(2000000)")
            inserts.append(time.perf_counter() - start)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    busy, pause_busy = spin(4)
    stop.set()
    thread.join()
    print(json.dumps({
        "cores": len(os.sched_getaffinity(0)), "load": round(os.getloadavg()[0], 1),
        "loop_alone_per_s": round(alone), "longest_pause_alone_ms": round(pause_alone * 1000, 1),
        "loop_during_inserts_per_s": round(busy), "longest_pause_during_inserts_ms": round(pause_busy * 1000, 1),
        "share_of_solo_rate": round(busy / alone, 2), "inserts": len(inserts),
        "mean_insert_s": round(sum(inserts) / max(1, len(inserts)), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
