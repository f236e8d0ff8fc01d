"""`python -m bench`: run every benchmark in turn (each prints its ratios)."""

import runpy
import sys

BENCHES = [
    "bench.bench_pipeline", "bench.bench_sdk", "bench.bench_judge", "bench.bench_toxicity", "bench.bench_drift",
    "bench.bench_hostile", "bench.bench_embedded",
]

for name in BENCHES:
    print(f"== {name}", flush=True)
    sys.argv = [name]
    runpy.run_module(name, run_name="__main__")
