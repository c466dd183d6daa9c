"""A tabular 3SPO run on combination-lock corridors, against trajectory-level GRPO (group_norm).

Each task is a corridor of `length` cells with a secret action per cell: the right action moves one
cell forward, any other is invalid ("Nothing happens", key unchanged). Reaching the end wins. The
policy is a softmax table over (task, cell). This exercises the math core end to end: state scores
from lagged statistics, adaptive n, branching on n >= 2, step rewards, step-group advantages.
"""

import json
import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from openrlhf_3spo.algo import StateTable, adaptive_n, group_advantages, step_reward
from openrlhf_3spo.io import atomic_write, atomic_write_jsonl, atomic_write_text


@dataclass
class CorridorConfig:
    tasks: int = 16
    length: int = 8
    actions: int = 6
    max_steps: int = 24
    iterations: int = 40
    grpo_group_size: int = 8
    g_max: int = 8
    lr: float = 0.3
    seed: int = 0


class Corridors:
    def __init__(self, cfg: CorridorConfig, rng):
        self.cfg = cfg
        self.secret = rng.integers(cfg.actions, size=(cfg.tasks, cfg.length))

    def step(self, task, cell, action):
        """-> (next cell, valid, won)"""
        if action != self.secret[task, cell]:
            return cell, False, False
        return cell + 1, True, cell + 1 == self.cfg.length


def _key(task, cell):
    return f"corridor/{task}/{cell}"


class TabularPolicy:
    def __init__(self, cfg: CorridorConfig):
        self.logits = np.zeros((cfg.tasks, cfg.length, cfg.actions))
        self.lr = cfg.lr

    def probs(self, task, cell):
        z = np.exp(self.logits[task, cell] - self.logits[task, cell].max())
        return z / z.sum()

    def sample(self, rng, task, cell, n):
        return rng.choice(len(self.logits[task, cell]), size=n, p=self.probs(task, cell))

    def update(self, samples, advantages):
        """Policy gradient on (task, cell, action) samples: grad log pi = onehot(a) - pi."""
        grad = np.zeros_like(self.logits)
        for (task, cell, action), adv in zip(samples, advantages):
            g = -self.probs(task, cell) * adv
            g[action] += adv
            grad[task, cell] += g
        self.logits += self.lr * grad / max(len(samples), 1)


def greedy_success_rate(env, policy):
    wins = 0
    for task in range(env.cfg.tasks):
        cell = 0
        for _ in range(env.cfg.max_steps):
            cell, _, won = env.step(task, cell, int(np.argmax(policy.logits[task, cell])))
            if won:
                wins += 1
                break
    return wins / env.cfg.tasks


def spo3_iteration(env, policy, table, rng, cfg):
    """One batch: adaptive branching rollout of every task, step-group advantages, then record."""
    samples, rewards, groups, trajectories, won_flags = [], [], [], [], []
    env_steps = truncated = decisions = n_groups = 0
    for task in range(cfg.tasks):
        cell, keys, won, cut = 0, [_key(task, 0)], False, False
        for _ in range(cfg.max_steps):
            key = _key(task, cell)
            score_t, n_total_t = table.scores([key])[0], table.n_total([key])[0]
            n = int(adaptive_n(score_t, cfg.g_max))
            decisions += 1
            if n == 0:
                truncated, cut = truncated + 1, True
                break
            actions = policy.sample(rng, task, cell, n)
            outcomes = [env.step(task, cell, int(a)) for a in actions]
            env_steps += n
            next_keys = [_key(task, nxt) for nxt, _, _ in outcomes]
            step_r = step_reward(
                score_t,
                table.scores(next_keys),
                n_total_t,
                novel=[k != key for k in next_keys],
                success=[w for _, _, w in outcomes],
                invalid=[not valid for _, valid, _ in outcomes],
            )
            if n >= 2:  # the n candidates at this state form one group
                samples.extend((task, cell, int(a)) for a in actions)
                rewards.extend(step_r)
                groups.extend([n_groups] * n)
                n_groups += 1
            best = int(np.argmax(step_r))
            cell, _, won = outcomes[best]
            keys.append(_key(task, cell))
            if won:
                break
        if not cut:  # truncated trajectories are not recorded
            trajectories.append(keys)
            won_flags.append(won)
    advantages = group_advantages(rewards, groups) if samples else np.zeros(0)
    policy.update(samples, advantages)
    scores_before = table.scores([k for keys in trajectories for k in keys]) if trajectories else np.ones(1)
    table.record(trajectories, won_flags)
    return {
        "env_steps": env_steps,
        "trained_samples": len(samples),
        "truncation_rate": truncated / cfg.tasks,
        "rollout_success": float(np.mean(won_flags)) if won_flags else 0.0,
        "mean_score": float(np.mean(scores_before)),
        "table_size": len(table),
        "decisions": decisions,
    }


def grpo_iteration(env, policy, rng, cfg):
    """Trajectory-level GRPO: G episodes per task, reward = won, group_norm, same advantage every step."""
    samples, rewards, groups, per_step_group = [], [], [], []
    env_steps, wins = 0, 0
    for task in range(cfg.tasks):
        for _ in range(cfg.grpo_group_size):
            cell, won, steps = 0, False, []
            for _ in range(cfg.max_steps):
                action = int(policy.sample(rng, task, cell, 1)[0])
                steps.append((task, cell, action))
                cell, _, won = env.step(task, cell, action)
                env_steps += 1
                if won:
                    break
            wins += won
            rewards.append(float(won))
            groups.append(task)
            samples.extend(steps)
            per_step_group.append(len(steps))
    traj_adv = group_advantages(rewards, groups)
    policy.update(samples, np.repeat(traj_adv, per_step_group))
    return {
        "env_steps": env_steps,
        "trained_samples": len(samples),
        "rollout_success": wins / (cfg.tasks * cfg.grpo_group_size),
    }


def run(cfg: CorridorConfig, out_dir: str):
    """Trains 3SPO and GRPO from the same start; writes metrics.jsonl, curves.png, summary.json."""
    os.makedirs(out_dir, exist_ok=True)
    env = Corridors(cfg, np.random.default_rng(cfg.seed))
    results = {}
    rows = []
    for method in ("3spo", "grpo"):
        rng = np.random.default_rng(cfg.seed + 1)
        policy, table = TabularPolicy(cfg), StateTable()
        total_steps, curve = 0, []
        start = time.perf_counter()
        for iteration in tqdm(range(cfg.iterations), desc=f"corridor {method}", unit="iter"):
            if method == "3spo":
                stats = spo3_iteration(env, policy, table, rng, cfg)
            else:
                stats = grpo_iteration(env, policy, rng, cfg)
            total_steps += stats["env_steps"]
            stats.update(
                method=method,
                iteration=iteration,
                total_env_steps=total_steps,
                greedy_success=greedy_success_rate(env, policy),
            )
            curve.append((total_steps, stats["greedy_success"]))
            rows.append(stats)
        results[method] = {
            "final_greedy_success": curve[-1][1],
            "env_steps": total_steps,
            "env_steps_to_half_success": next((s for s, r in curve if r >= 0.5), None),
            "seconds": round(time.perf_counter() - start, 3),
            "curve": curve,
        }
    atomic_write_jsonl(os.path.join(out_dir, "metrics.jsonl"), rows)
    _plot(results, os.path.join(out_dir, "curves.png"))
    summary = {m: {k: v for k, v in r.items() if k != "curve"} for m, r in results.items()}
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))
    return summary


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, r in results.items():
        steps, success = zip(*r["curve"])
        ax.plot(steps, success, label=method.upper(), marker=".")
    ax.set_xscale("log")  # the methods differ by orders of magnitude in steps
    ax.set_xlabel("environment steps (log scale)")
    ax.set_ylabel("greedy success rate")
    ax.set_title("Combination-lock corridors: 3SPO vs trajectory-level GRPO")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)

