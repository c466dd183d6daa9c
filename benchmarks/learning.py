"""Learning at equal env-step budgets: the shipped 3SPO executor, its ablations and GRPO, on ALFWorld.

    python benchmarks/learning.py --out runs/learning   # every arm x 5 seeds

Every comparison is made at two budgets: equal env steps (forks' steps count), and equal generated
samples (each candidate is one generation; the paper's "comparable resources" is closer to this).
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

# the demo's regime (its 12 games, warm start and budget), every arm, 5 seeds
DEFAULTS = DemoArgs(seeds=(0, 1, 2, 3, 4), arms=tuple(ARMS))


def spread(values):
    """Mean, std, min and max over seeds (None where undefined for every seed)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "min": round(float(np.min(values)), 4), "max": round(float(np.max(values)), 4), "seeds": len(values)}


def budgets(rows, args):
    """The budget of each accounting: the env-step budget, and the fewest generated samples any arm
    and seed spent by its end (so that every run has reached it)."""
    runs = [[r for r in rows if r["arm"] == arm and r["seed"] == seed] for arm in args.arms for seed in args.seeds]
    return {"env_steps": args.env_steps, "generated_samples": min(run[-1]["generated_samples"] for run in runs)}


def compare(rows, args):
    """Per arm and seed, at the budget of each accounting (an arm that stalled keeps its last values):
    greedy and sampled success (the last evaluation at or before it); the budget spent to reach
    GRPO's final success, over GRPO's; distinct states (interpolated between iterations), and over
    GRPO's. Then, at the env-step budget: engine requests, trainable samples per env step, the n histogram."""
    results = {arm: {} for arm in args.arms}
    for accounting, budget in budgets(rows, args).items():
        for arm in args.arms:
            per_seed = {"success": [], "sampled_success": [], "to_grpo_final_ratio": [], "unique_states": [],
                        "unique_states_ratio": []}
            for seed in args.seeds:
                spent, success = curve(rows, arm, seed, "eval_success", accounting)
                per_seed["success"].append(value_at(spent, success, budget))
                per_seed["sampled_success"].append(value_at(*curve(rows, arm, seed, "eval_sampled_success", accounting), budget))
                states = float(np.interp(budget, *curve(rows, arm, seed, "unique_states", accounting)))  # counted every iteration
                per_seed["unique_states"].append(states)
                if "grpo" in args.arms:
                    g_spent, g_success = curve(rows, "grpo", seed, "eval_success", accounting)
                    target = value_at(g_spent, g_success, budget)
                    mine, theirs = steps_to_reach(spent, success, target), steps_to_reach(g_spent, g_success, target)
                    # GRPO's final success 0 is reached at 0 by everyone: no ratio
                    ratio = mine / theirs if target > 0 and mine is not None and theirs else None
                    per_seed["to_grpo_final_ratio"].append(ratio)
                    grpo_states = float(np.interp(budget, *curve(rows, "grpo", seed, "unique_states", accounting)))
                    per_seed["unique_states_ratio"].append(states / grpo_states)
            results[arm][accounting] = {"budget": budget, **{k: spread(v) for k, v in per_seed.items()},
                                        "success_per_seed": per_seed["success"]}
    for arm in args.arms:
        runs = [[r for r in rows if r["arm"] == arm and r["seed"] == seed] for seed in args.seeds]
        results[arm]["engine_requests"] = spread([run[-1]["engine_requests"] for run in runs])
        results[arm]["trained_per_env_step"] = spread(
            [sum(r["trained_samples"] for r in run) / max(run[-1]["env_steps"], 1) for run in runs])
        results[arm]["stalled_seeds"] = sum(bool(run[-1].get("stalled")) for run in runs)
        histograms = [r["n_histogram"] for run in runs for r in run if "n_histogram" in r]
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
