"""State-score table costs: lookups in process and through Ray, recording, snapshots, memory per state.

    python benchmarks/state_table.py [--states 1000000]

Ends with one JSON line of results.
"""

import argparse
import gc
import hashlib
import json
import os
import tempfile
import time
import tracemalloc

import numpy as np
import ray

from openrlhf_3spo.algo import StateTable
from openrlhf_3spo.state.client import StateScores
from openrlhf_3spo.state.snapshot import load_snapshot, save_snapshot


def _keys(n, salt=""):
    return [hashlib.blake2b(f"{salt}{i}".encode(), digest_size=16).hexdigest() for i in range(n)]


def _best_of(runs, fn):
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}

    # recording: 10,000 trajectories of 30 distinct keys
    keys = _keys(300_000, "record")
    trajectories = [keys[i * 30 : (i + 1) * 30] for i in range(10_000)]
    won = (rng.random(10_000) < 0.3).tolist()
    results["record_10000x30_s"] = round(_best_of(3, lambda: StateTable().record(trajectories, won)), 3)

    # a table of --states states, and its memory per state
    gc.collect()
    tracemalloc.start()
    all_keys = _keys(args.states)
    before = tracemalloc.get_traced_memory()[0]
    table = StateTable()
    for start in range(0, args.states, 100_000):
        chunk = all_keys[start : start + 100_000]
        table.record([chunk[i : i + 50] for i in range(0, len(chunk), 50)], (rng.random(len(chunk) // 50) < 0.3).tolist())
    table_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    results["table_memory_bytes_per_state"] = round(table_bytes / args.states, 1)

    queries = [all_keys[i] for i in rng.integers(0, args.states, 100_000)]
    batches = [queries[i : i + 256] for i in range(0, len(queries), 256)]
    results["inprocess_lookups_per_s_batch_100000"] = round(len(queries) / _best_of(3, lambda: table.scores(queries)))
    results["inprocess_lookups_per_s_batch_256"] = round(
        len(queries) / _best_of(3, lambda: [table.scores(b) for b in batches])
    )

    with tempfile.TemporaryDirectory() as directory:
        results["save_s"] = round(_best_of(3, lambda: save_snapshot(directory, table)), 3)
        size = os.path.getsize(os.path.join(directory, "state_table.npz"))
        results["load_s"] = round(_best_of(3, lambda: load_snapshot(directory)), 3)
    results["snapshot_states"] = args.states
    results["snapshot_mb"] = round(size / 1e6, 1)
    results["snapshot_bytes_per_state"] = round(size / args.states, 1)

    # through Ray: one actor holding 100,000 states, lookups in batches of 256
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    scores = StateScores.create("bench")
    ray_keys = all_keys[:100_000]
    scores.record([ray_keys[i : i + 50] for i in range(0, len(ray_keys), 50)], [True] * 2000)
    version = scores.advance()
    ray_batches = [[ray_keys[i] for i in rng.integers(0, len(ray_keys), 256)] for _ in range(400)]
    seconds = _best_of(3, lambda: [scores.lookup(b, version) for b in ray_batches])
    results["ray_keys_per_s_batch_256_sequential"] = round(256 * len(ray_batches) / seconds)
    actor = scores.actors[0]
    seconds = _best_of(3, lambda: ray.get([actor.lookup.remote(b, version) for b in ray_batches]))
    results["ray_keys_per_s_batch_256_pipelined"] = round(256 * len(ray_batches) / seconds)
    start = time.perf_counter()
    scores.record(trajectories, won)
    scores.advance()
    results["ray_record_and_advance_10000x30_s"] = round(time.perf_counter() - start, 3)
    ray.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
