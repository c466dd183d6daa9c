"""The CPU demo: the shipped 3SPO executor against trajectory-level GRPO on real ALFWorld games.

Both arms start from the same small policy (`demo/policy.py`, a softmax over the admissible actions
with hashed text features, answering through the engine interface), play the same games in the same
order with the same prompts, and get the same budget of env steps. Per iteration, as OpenRLHF's
samples generator and experience maker do: one executor call per task of the batch, advantages over
the trained step samples, one policy-gradient step, then (3SPO) the batch's trajectories are recorded
and the state table starts its next version. Every env step counts, forks' steps included; greedy
evaluation (one trajectory per game, temperature 0) does not.
"""

import asyncio
import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from openrlhf_3spo.algo import group_advantages
from openrlhf_3spo.demo.policy import LinearPolicy
from openrlhf_3spo.envs.alfworld import ALFWorldEnv, find_games, load_game
from openrlhf_3spo.envs.pool import LocalEnv
from openrlhf_3spo.io import atomic_write, atomic_write_jsonl, atomic_write_text
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings

# executor options per arm (None: the GRPO executor's B independent episodes per task, with
# trajectory-level group_norm or GiGPO's advantages); the benchmark runs them all
ARMS = {
    "3spo": {},
    "grpo": None,
    "gigpo": None,
    "3spo_obs": {"state_key": "obs"},
    "3spo_fixed_n": {"n_rule": "fixed"},
    "3spo_paper": {"write_off": "paper", "tried_pairs": "filter"},
    # where a finished trajectory backtracks to, and which candidate a path continues along
    "3spo_bt_best": {"backtrack": "best"},
    "3spo_bt_shallowest": {"backtrack": "shallowest"},
    "3spo_bt_sampled": {"backtrack": "sampled"},
    "3spo_continue_sampled": {"continue_along": "sampled"},
    "3spo_independent": {"backtrack": "none"},  # B independent episodes with step groups: post-step GRPO
}


def _setting(default, help):
    return dataclasses.field(default=default, metadata={"help": help})


def _from_settings(name):
    """A setting the demo shares with training: its default and help from `Settings`."""
    shared = next(f for f in dataclasses.fields(Settings) if f.name == name)
    return _setting(shared.default, shared.metadata["help"])


@dataclass
class DemoArgs:
    """Settings shared by every arm (only the method differs). The CLI's flags and
    benchmarks/learning.py's come from here: `--env-steps` sets `env_steps`."""

    data: str = _setting("shipped", '"shipped" (the games in this package) or a folder holding json_2.1.1/<split>/')
    split: str = _setting("train", "train, valid_seen or valid_unseen")
    games: int = _setting(0, "the first N games of the split (0: all)")
    seeds: tuple = _setting((0,), "comma-separated seeds: one run of each arm per seed")
    arms: tuple = _setting(("3spo", "grpo", "gigpo"), f"comma-separated arms, of {', '.join(ARMS)}")
    env_steps: int = _setting(20000, "env-step budget per arm and seed; forks' steps count, evaluation's do not")
    max_steps: int = _setting(30, "episode length")
    batch_tasks: int = _setting(4, "tasks per iteration (one policy update)")
    trajectories: int = _setting(8, "B: trajectories per task (3SPO: root-to-leaf paths of its branching rollout)")
    g_max: int = _from_settings("g_max")
    alpha: float = _from_settings("alpha")
    history_length: int = _from_settings("history_length")
    temperature: float = _setting(1.0, "sampling temperature in training")
    lr: float = _setting(0.05, "policy learning rate (Adam)")
    features: int = _setting(65536, "policy weights (hashed features)")
    eval_every: int = _setting(3, "iterations between greedy evaluations")
    warm_start_epochs: int = _setting(6, "behaviour-cloning epochs on the games' own walkthroughs before RL (0: none)")
    warm_start_lr: float = _setting(0.05, "learning rate of the behaviour cloning (Adam)")
    workers: int = _setting(2, "processes training arms and seeds side by side (each run is single-threaded)")
    max_length: int = _setting(32768, "context limit in prompt bytes: never binding for ALFWorld prompts")

    def check(self):
        for name in ("env_steps", "max_steps", "batch_tasks", "trajectories", "eval_every", "features", "workers", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("games", "warm_start_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "warm_start_lr", "temperature"):  # a NaN would surface minutes later, inside sampling
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be a finite number > 0, got {getattr(self, name)}")
        shared = {"g_max": self.g_max, "alpha": self.alpha, "history_length": self.history_length}
        found = Settings.problems(shared, flag_of=lambda name: f"--{name.replace('_', '-')}")  # checked as in training
        if found:
            raise ValueError(found[0])
        if not self.seeds or not self.arms:
            raise ValueError("--seeds and --arms must name at least one each")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arms {unknown}; known: {list(ARMS)}")
        return self


def add_flags(parser, defaults=None):
    """One flag per DemoArgs field (tuples as comma-separated lists), defaults from `defaults`."""
    defaults = defaults or DemoArgs()
    for f in dataclasses.fields(DemoArgs):
        value = getattr(defaults, f.name)
        kind = str if isinstance(value, tuple) else type(value)
        default = ",".join(map(str, value)) if isinstance(value, tuple) else value
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, help=f.metadata["help"])


def args_from(namespace):
    """DemoArgs from parsed flags; bad values raise ValueError."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(DemoArgs)}
    try:
        values["seeds"] = tuple(int(s) for s in values["seeds"].split(","))
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {values['seeds']!r}") from None
    values["arms"] = tuple(a.strip() for a in values["arms"].split(","))
    return DemoArgs(**values).check()


class CountedEnv(LocalEnv):
    """A LocalEnv whose steps (forks' included) and state keys go into a shared budget."""

    def __init__(self, env, budget):
        super().__init__(env)
        self.budget = budget

    async def reset(self):
        observation = self.env.reset()
        self.budget.keys.add(observation.state_key)
        return observation

    async def step(self, action):
        observation = self.env.step(action)
        self.budget.steps += 1
        self.budget.keys.add(observation.state_key)
        return observation

    async def fork(self):
        self.budget.forks += 1
        return CountedEnv(self.env.fork(), self.budget)


class CountedEngine:
    """The policy behind the engine interface, counting engine requests and generated samples."""

    def __init__(self, policy, budget):
        self.policy, self.budget = policy, budget

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.budget.requests += 1
        self.budget.samples += sampling_params.n
        return await self.policy.generate(prompt_token_ids, sampling_params, multi_modal_data)


@dataclass
class Budget:
    steps: int = 0
    forks: int = 0
    requests: int = 0  # engine requests (one serves n samples)
    samples: int = 0  # generated samples: each candidate is one generation
    keys: set = dataclasses.field(default_factory=set)


def _sampling_params(temperature):
    from vllm import SamplingParams

    return SamplingParams(temperature=temperature, max_tokens=128)


def _executor(arm, args, make_env, scores, seed):
    if ARMS[arm] is None:
        from openrlhf_3spo.rollout.grpo import GRPOExecutor

        return GRPOExecutor(make_env, "alfworld", Settings(history_length=args.history_length))
    from openrlhf_3spo.rollout.executor import SPO3Executor

    settings = Settings(history_length=args.history_length, g_max=args.g_max, **ARMS[arm])
    return SPO3Executor(make_env, scores, "alfworld", settings, seed=seed)


def _advantages(arm, samples):
    if not samples:
        return np.zeros(0)
    rewards, groups = [s["reward"] for s in samples], [s["group_id"] for s in samples]
    if arm == "gigpo":
        from openrlhf_3spo.algo import gigpo_advantages

        columns = ("env_reward", "trajectory_id", "state_key")
        step_rewards, trajectories, keys = ([s[c] for s in samples] for c in columns)
        return gigpo_advantages(
            step_rewards, groups, trajectories, keys, gamma=Settings.gigpo_gamma,
            step_advantage_w=Settings.gigpo_step_weight, norm=Settings.gigpo_norm,
        )
    if ARMS[arm] is None:
        from openrlhf_3spo.algo import trajectory_advantages

        return trajectory_advantages(rewards, groups, [s["trajectory_id"] for s in samples])
    return group_advantages(rewards, groups)


async def evaluate(policy, games, args, temperature=0.0, episodes=1, seed=0):
    """Success rate over `episodes` episodes per game, through the eval episode every step mode uses
    (`evaluation.eval_episode`: the same prompts and parsing as training), on envs outside the budget.
    Greedy by default; sampled episodes draw from their own generator, not the training's."""
    import copy

    from openrlhf_3spo.rollout.evaluation import eval_episode

    async def make_env(game_file):
        return LocalEnv(ALFWorldEnv(game_file, max_steps=args.max_steps))

    settings = Settings(history_length=args.history_length)
    sampler = copy.copy(policy)  # the same weights
    sampler.rng = np.random.default_rng(seed)
    params, wins = _sampling_params(temperature), 0
    for game in games:
        for _ in range(episodes):
            out = await eval_episode(make_env, "alfworld", settings, game, game, params, args.max_length, sampler.tokenizer, sampler)
            wins += out["reward"]  # task success, 1 or 0
    return wins / (len(games) * episodes)


async def _evaluations(policy, games, args):
    """Greedy success, and sampled success at the training temperature (4 episodes per game)."""
    return {
        "eval_success": await evaluate(policy, games, args),
        "eval_sampled_success": await evaluate(policy, games, args, args.temperature, episodes=4),
    }


def walkthrough_samples(games, args, tokenizer):
    """(context ids, expert action) for every step of every game's walkthrough (`walkthrough` in its
    game.tw-pddl, as the official games have), with the prompts the executors render."""
    from openrlhf_3spo.rollout.step import step_context

    samples = []
    for game in games:
        walkthrough = load_game(game).get("walkthrough")
        if not walkthrough:
            raise ValueError(f"ALFWorld game {game}: no walkthrough, which --warm-start-epochs needs")
        env = ALFWorldEnv(game, max_steps=max(args.max_steps, len(walkthrough)))
        observation, history = env.reset(), []
        for action in walkthrough:
            context = step_context(tokenizer, "alfworld", env.task, history, observation, args.history_length, args.max_length)
            samples.append({"context_ids": context, "action": action})
            history.append((observation.text, action))
            observation = env.step(action)
        env.close()
        if not observation.won:
            raise ValueError(f"ALFWorld game {game}: its walkthrough does not win it")
    return samples


def warm_policy(args, games, seed):
    """The policy both arms start from: zero weights, then `warm_start_epochs` behaviour-cloning
    steps on the walkthroughs (one Adam step per epoch, advantage 1 on every expert action)."""
    policy = LinearPolicy(args.features, args.warm_start_lr, seed)
    if args.warm_start_epochs:
        samples = walkthrough_samples(games, args, policy.tokenizer)
        for _ in range(args.warm_start_epochs):
            policy.update(samples, np.ones(len(samples)))
    # RL: its own learning rate, Adam started afresh
    policy.lr, policy.m, policy.v, policy.t = args.lr, np.zeros(args.features), np.zeros(args.features), 0
    return policy


async def train_arm(arm, args, games, seed):
    """Trains one arm from the initial policy until its env-step budget is spent; -> metric rows."""
    from openrlhf_3spo.state.local import LocalStateScores

    policy = warm_policy(args, games, seed)
    budget = Budget()

    async def make_env(game_file):
        return CountedEnv(ALFWorldEnv(game_file, max_steps=args.max_steps), budget)

    scores = LocalStateScores(alpha=args.alpha) if ARMS[arm] is not None else None
    executor = _executor(arm, args, make_env, scores, seed)
    engine = CountedEngine(policy, budget)
    params = _sampling_params(args.temperature)
    order_rng = np.random.default_rng(seed)  # the same game order for every arm
    queue, rows = [], []
    idle, start = 0, time.perf_counter()
    row = {"arm": arm, "seed": seed, "iteration": 0, "env_steps": 0, "forks": 0, "engine_requests": 0, "generated_samples": 0,
           "unique_states": 0, "trained_samples": 0}
    row.update(**await _evaluations(policy, games, args), seconds=0.0)
    rows.append(row)
    bar = tqdm(total=args.env_steps, desc=f"{arm} seed {seed}", unit="step")
    iteration = 0
    while budget.steps < args.env_steps:
        iteration += 1
        if len(queue) < args.batch_tasks:
            queue += list(order_rng.permutation(games))
        batch, queue = queue[: args.batch_tasks], queue[args.batch_tasks :]
        steps_before = budget.steps
        outs = []
        for game in batch:
            version = scores.current_version() if scores is not None else None
            label = TaskRequest(game, trajectories=args.trajectories, version=version).to_label()
            outs.append(await executor.execute(game, label, params, args.max_length, policy.tokenizer, engine))
        samples = [s for o in outs for s in o["step_samples"] if s["trained"]]
        policy.update(samples, _advantages(arm, samples))
        trajectories = [t for o in outs for t in o["trajectories"]]
        truncated = sum(o.get("truncated_trajectories", 0) for o in outs)
        row = {
            "arm": arm,
            "seed": seed,
            "iteration": iteration,
            "env_steps": budget.steps,
            "forks": budget.forks,
            "engine_requests": budget.requests,
            "generated_samples": budget.samples,
            "unique_states": len(budget.keys),
            "trained_samples": len(samples),
            "step_samples": sum(len(o["step_samples"]) for o in outs),
            "rollout_success": sum(t["won"] for t in trajectories) / max(len(trajectories) + truncated, 1),
        }
        if scores is not None:  # as the experience maker: record the batch, then the next version
            scores.record([t["keys"] for t in trajectories], [t["won"] for t in trajectories])
            scores.advance()
            stats = scores.stats()
            spent = {k: sum(o["rollout_stats"][k] for o in outs) for k in ("main_steps", "fork_steps", "continuation_steps")}
            depths = [d for o in outs for d in o["rollout_stats"]["backtrack_depths"]]
            row.update(
                table_size=stats["unique_states"],
                truncated_trajectories=truncated,
                n_histogram=_n_histogram(outs, args.g_max),
                **spent,
                backtrack_depth_mean=float(np.mean(depths)) if depths else None,
            )
        # a batch of written-off tasks spends nothing: stop once a whole pass over the games did
        idle = idle + 1 if budget.steps == steps_before else 0
        stalled = idle >= math.ceil(len(games) / args.batch_tasks)
        done = budget.steps >= args.env_steps or stalled
        if iteration % args.eval_every == 0 or done:
            row.update(await _evaluations(policy, games, args))
            bar.set_postfix(greedy=f"{row['eval_success']:.2f}", sampled=f"{row['eval_sampled_success']:.2f}", states=len(budget.keys))
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        bar.update(min(budget.steps, args.env_steps) - bar.n)
        if stalled:
            row["stalled"] = True
            break
    bar.close()
    return rows


def _train(arm, args, games, seed):
    return asyncio.run(train_arm(arm, args, games, seed))


def _train_all(runs, args, games):
    """Yields ((arm, seed), rows) as each run ends: in this process with one worker, else in
    `args.workers` processes, spawned (a forked copy of a process with threads can hang)."""
    if args.workers == 1:
        for arm, seed in runs:
            yield (arm, seed), _train(arm, args, games, seed)
        return
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(args.workers, len(runs)), mp_context=spawn) as pool:
        futures = {pool.submit(_train, arm, args, games, seed): (arm, seed) for arm, seed in runs}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


def _n_histogram(outs, g_max):
    """Decision points by the n they drew (one count per group, not per candidate)."""
    n_of = {s["group_id"]: s["n"] for o in outs for s in o["step_samples"]}
    return np.bincount(list(n_of.values()), minlength=g_max + 1).tolist()


OUTPUTS = ("metrics.jsonl", "summary.json", "curves.png")


def run(args: DemoArgs, out_dir):
    """Trains every arm for every seed; writes metrics.jsonl, summary.json and curves.png. They are
    made in `out_dir/.incoming/` (partial metrics after each arm, which a crash leaves readable there)
    and moved into `out_dir` together at the end: a new run never replaces the last one's results
    before it has its own."""
    args.check()
    incoming = os.path.join(out_dir, ".incoming")
    atomic_write_jsonl(os.path.join(incoming, "metrics.jsonl"), [])  # a bad out_dir fails now, not after training
    games = find_games(args.split, args.data)
    games = games[: args.games] if args.games else games
    runs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    done = {}
    for key, arm_rows in _train_all(runs, args, games):
        done[key] = arm_rows
        rows = [row for k in runs if k in done for row in done[k]]
        atomic_write_jsonl(os.path.join(incoming, "metrics.jsonl"), rows)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(args).items()}
    summary = {"settings": settings, "games": len(games), "arms": summarize(rows, args.arms)}
    atomic_write_text(os.path.join(incoming, "summary.json"), json.dumps(summary, indent=2))
    plot_curves(rows, args.arms, os.path.join(incoming, "curves.png"), f"ALFWorld ({len(games)} {args.split} games)")
    for name in OUTPUTS:
        os.replace(os.path.join(incoming, name), os.path.join(out_dir, name))
    os.rmdir(incoming)
    return summary


# ---- curves and summaries: shared with benchmarks/learning.py -----------------------------------


ACCOUNTINGS = ("env_steps", "generated_samples")  # the budgets every comparison is made at


def curve(rows, arm, seed, metric, budget="env_steps"):
    """(budget spent, metric) at the rows of one arm and seed that have it; budget: one of ACCOUNTINGS."""
    points = [(r[budget], r[metric]) for r in rows if r["arm"] == arm and r["seed"] == seed and metric in r]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points], dtype=float)


def value_at(steps, values, x):
    """The last value measured at or before x spent (a step function)."""
    i = np.searchsorted(steps, x, side="right") - 1
    return float(values[max(i, 0)])


def steps_to_reach(steps, values, target):
    """The budget spent at the first measurement reaching `target`, or None."""
    hit = np.nonzero(values >= target - 1e-9)[0]
    return int(steps[hit[0]]) if len(hit) else None


def summarize(rows, arms):
    """Per arm: per-seed results and their mean, min and max."""
    seeds = sorted({r["seed"] for r in rows})
    out = {}
    for arm in arms:
        per_seed = []
        for seed in seeds:
            mine = [r for r in rows if r["arm"] == arm and r["seed"] == seed]
            steps, success = curve(rows, arm, seed, "eval_success")
            last = mine[-1]
            per_seed.append(
                {
                    "seed": seed,
                    "env_steps": last["env_steps"],
                    "forks": last["forks"],
                    "generated_samples": last["generated_samples"],
                    "engine_requests": last["engine_requests"],
                    "final_eval_success": float(success[-1]),
                    "start_eval_success": float(success[0]),
                    "best_eval_success": float(success.max()),
                    "final_eval_sampled_success": float(curve(rows, arm, seed, "eval_sampled_success")[1][-1]),
                    "start_eval_sampled_success": float(curve(rows, arm, seed, "eval_sampled_success")[1][0]),
                    "unique_states": last["unique_states"],
                    "trained_samples": sum(r["trained_samples"] for r in mine),
                    "trained_samples_per_env_step": sum(r["trained_samples"] for r in mine) / max(last["env_steps"], 1),
                    "rollout_success": float(np.mean([r["rollout_success"] for r in mine if "rollout_success" in r])),
                    "iterations": last["iteration"],
                    "seconds": last["seconds"],
                    "stalled": bool(last.get("stalled", False)),
                }
            )
        out[arm] = {"seeds": per_seed}
        for key in ("start_eval_success", "final_eval_success", "start_eval_sampled_success", "final_eval_sampled_success",
                    "unique_states", "trained_samples_per_env_step", "env_steps", "generated_samples"):
            values = [s[key] for s in per_seed]
            out[arm][key] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
        histograms = [r["n_histogram"] for r in rows if r["arm"] == arm and "n_histogram" in r]
        if histograms:
            out[arm]["n_histogram"] = np.sum(histograms, axis=0).tolist()
            kinds = ("main_steps", "fork_steps", "continuation_steps")  # where the env steps went, all seeds
            out[arm]["env_steps_by_kind"] = {k: int(sum(r.get(k, 0) for r in rows if r["arm"] == arm)) for k in kinds}
            depths = [r["backtrack_depth_mean"] for r in rows if r["arm"] == arm and r.get("backtrack_depth_mean") is not None]
            out[arm]["backtrack_depth_mean"] = float(np.mean(depths)) if depths else None
    return out


def mean_band(rows, arm, metric, grid, budget="env_steps"):
    """Mean, min and max over seeds of a metric on a grid of the budget (a run that ended holds its
    last value)."""
    seeds = sorted({r["seed"] for r in rows if r["arm"] == arm})
    table = np.array([[value_at(*curve(rows, arm, seed, metric, budget), x) for x in grid] for seed in seeds])
    return table.mean(0), table.min(0), table.max(0)


def plot_curves(rows, arms, path, title):
    """Greedy success, sampled success and distinct states, against env steps (top) and against
    generated samples (bottom): mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("eval_success", "greedy success rate (one episode per game)"),
        ("eval_sampled_success", "sampled success rate (4 episodes per game)"),
        ("unique_states", "distinct env states visited"),
    )
    x_labels = {"env_steps": "env steps (forks' steps included)", "generated_samples": "generated samples (candidates)"}
    fig, axes = plt.subplots(len(ACCOUNTINGS), len(panels), figsize=(16, 8), squeeze=False)
    for row, budget in zip(axes, ACCOUNTINGS):
        for arm in arms:
            grid = np.linspace(0, max(r[budget] for r in rows if r["arm"] == arm), 200)
            for ax, (metric, _) in zip(row, panels):
                mean, low, high = mean_band(rows, arm, metric, grid, budget)
                (line,) = ax.plot(grid, mean, label=arm, drawstyle="steps-post")
                ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, step="post")
        for ax, (metric, label) in zip(row, panels):
            ax.set_ylabel(label)
            if metric != "unique_states":
                ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(x_labels[budget])
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
