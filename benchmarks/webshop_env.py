"""WebShop env costs: step latency (search and click steps) on the shipped catalog, search latency
and index build time and memory on the shipped catalog and on a 10,000-product one made from it.

    python benchmarks/webshop_env.py [--products 10000]

Ends with one JSON line of results.
"""

import argparse
import json
import random
import statistics
import tempfile
import time
import tracemalloc

from tqdm import tqdm

from openrlhf_3spo.envs.webshop import SearchIndex, WebShopEnv, catalog, product_text


def _ms(samples):
    samples = sorted(samples)
    return {"median_ms": round(1000 * statistics.median(samples), 3), "p90_ms": round(1000 * samples[int(0.9 * (len(samples) - 1))], 3)}


def index_costs(texts, queries):
    with tempfile.TemporaryDirectory() as cache:
        tracemalloc.start()
        start = time.perf_counter()
        index = SearchIndex(texts, cache)  # built, then saved
        build = time.perf_counter() - start
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        start = time.perf_counter()
        SearchIndex(texts, cache)  # loaded from the disk cache
        load = time.perf_counter() - start
    latencies = []
    for q in queries:
        start = time.perf_counter()
        index.search(q)
        latencies.append(time.perf_counter() - start)
    return {
        "products": len(texts), "build_and_save_s": round(build, 3), "load_from_cache_s": round(load, 3),
        "index_mb": round(memory / 1e6, 2), "search": _ms(latencies),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(0)
    shipped = catalog("shipped")
    queries = [g["instruction_text"] for g in shipped.goals]

    search_steps, click_steps = [], []
    for episode in tqdm(range(args.episodes), desc="episodes", unit="episode"):
        env = WebShopEnv(episode % len(shipped.goals), "shipped")
        obs = env.reset()
        while not obs.done:
            if obs.admissible_actions == ["search[<your query>]"]:
                action, bucket = f"search[{rng.choice(queries)}]", search_steps
            else:
                action, bucket = rng.choice(obs.admissible_actions), click_steps
            start = time.perf_counter()
            obs = env.step(action)
            bucket.append(time.perf_counter() - start)

    texts = [product_text(p) for p in shipped.products]
    large = [f"{text} edition {i // len(texts)}" for i, text in zip(range(args.products), texts * (args.products // len(texts) + 1))]
    results = {
        "search_step": _ms(search_steps),
        "click_step": _ms(click_steps),
        "shipped": index_costs(texts, queries),
        "large": index_costs(large, queries),
    }
    results["search_latency_ratio_large_over_shipped"] = round(
        results["large"]["search"]["median_ms"] / results["shipped"]["search"]["median_ms"], 2
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
