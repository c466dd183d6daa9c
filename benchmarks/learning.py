"""Learning at equal env-step budgets: the shipped 3SPO executor, its ablations and GRPO, on ALFWorld.

    python benchmarks/learning.py --out runs/learning   # every arm x 5 seeds

Every arm trains the demo's CPU policy (`openrlhf_3spo/demo/policy.py`) with the demo's loop and
settings (`DemoArgs`, every field a flag, the warm start included): same start, same games in the
same order, same prompts, same env-step budget; only the method differs. Arms: every entry of the
demo's `ARMS`: `3spo`; `grpo` (trajectory-level group_norm); `gigpo`; `3spo_obs` (state key: the
observation text); `3spo_fixed_n` (n = G_max everywhere); `3spo_paper` (the paper's literal
write-off and tried-pair rules); the rollout rules `3spo_bt_*`, `3spo_continue_sampled` and
`3spo_independent`. Writes the demo's files (metrics.jsonl,
summary.json, curves.png: mean over seeds with a min-max band) and results.json to --out, and ends
with one JSON line of results.
"""

import argparse
import json
import os
import sys

import numpy as np

from openrlhf_3spo.demo.alfworld_demo import ARMS, DemoArgs, add_flags, args_from, curve, run, steps_to_reach, value_at
from openrlhf_3spo.io import atomic_write_text

# the demo's settings, on the first 4 shipped train games (the table sees each game every iteration)
DEFAULTS = DemoArgs(seeds=(0, 1, 2, 3, 4), arms=tuple(ARMS), games=4, env_steps=5000)


def spread(values):
    """Mean, std, min and max over seeds (None where undefined for every seed)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "min": round(float(np.min(values)), 4), "max": round(float(np.max(values)), 4), "seeds": len(values)}


def compare(rows, args):
    """Per arm and seed, at the budget (an arm that stalled keeps its last values): greedy success
    (the last evaluation at or before it); env steps to reach GRPO's final success, over GRPO's;
    unique states (interpolated between iterations), and over GRPO's; trainable samples per env
    step; and the n histogram."""
    budget, results = args.env_steps, {}
    for arm in args.arms:
        per_seed = {"success": [], "steps_to_grpo_final_ratio": [], "unique_states": [], "unique_states_ratio": [],
                    "trained_per_env_step": []}
        for seed in args.seeds:
            steps, success = curve(rows, arm, seed, "eval_success")
            per_seed["success"].append(value_at(steps, success, budget))
            states = float(np.interp(budget, *curve(rows, arm, seed, "unique_states")))  # counted every iteration
            per_seed["unique_states"].append(states)
            trained = [r for r in rows if r["arm"] == arm and r["seed"] == seed]
            per_seed["trained_per_env_step"].append(sum(r["trained_samples"] for r in trained) / max(trained[-1]["env_steps"], 1))
            if "grpo" in args.arms:
                g_steps, g_success = curve(rows, "grpo", seed, "eval_success")
                target = value_at(g_steps, g_success, budget)
                mine, theirs = steps_to_reach(steps, success, target), steps_to_reach(g_steps, g_success, target)
                # GRPO's final success 0 is reached at step 0 by everyone: no ratio
                ratio = mine / theirs if target > 0 and mine is not None and theirs else None
                per_seed["steps_to_grpo_final_ratio"].append(ratio)
                per_seed["unique_states_ratio"].append(states / float(np.interp(budget, *curve(rows, "grpo", seed, "unique_states"))))
        histograms = [r["n_histogram"] for r in rows if r["arm"] == arm and "n_histogram" in r]
        results[arm] = {k: spread(v) for k, v in per_seed.items()}
        results[arm]["success_per_seed"] = per_seed["success"]
        results[arm]["stalled_seeds"] = sum(
            bool([r for r in rows if r["arm"] == arm and r["seed"] == s][-1].get("stalled")) for s in args.seeds
        )
        if histograms:
            total = np.sum(histograms, axis=0)
            results[arm]["n_histogram"] = {str(n): int(c) for n, c in enumerate(total) if c}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser, DEFAULTS)
    parser.add_argument("--out", default="runs/learning", help="output folder")
    namespace = parser.parse_args(argv)
    try:
        args = args_from(namespace)
    except ValueError as error:
        sys.exit(f"learning.py: error: {error}")
    summary = run(args, namespace.out)
    rows = [json.loads(line) for line in open(os.path.join(namespace.out, "metrics.jsonl"))]
    results = {"settings": summary["settings"], "games": summary["games"], "arms": compare(rows, args)}
    atomic_write_text(os.path.join(namespace.out, "results.json"), json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
