"""ALFWorld env costs on the shipped games: reset, step and fork latency, fork against replay by
stepping, and episode throughput of the env worker pool against one process.

    python benchmarks/alfworld_env.py [--workers 2] [--episodes 32] [--episode-steps 20]

Ends with one JSON line of results.
"""

import argparse
import asyncio
import json
import random
import statistics
import time

from tqdm import tqdm

from openrlhf_3spo.envs.alfworld import ALFWorldEnv, find_games
from openrlhf_3spo.envs.pool import EnvPool

DEPTHS = (5, 10, 20, 40)


def _ms(seconds):
    return round(1000 * seconds, 2)


def _summary(samples):
    samples = sorted(samples)
    return {"median_ms": _ms(statistics.median(samples)), "p90_ms": _ms(samples[int(0.9 * (len(samples) - 1))])}


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _random_walk(env, rng, steps):
    """Plays `steps` random admissible actions that do not end the episode; returns them."""
    obs, actions = env.reset(), []
    while len(actions) < steps:
        candidates = [a for a in obs.admissible_actions if a not in ("help",)]
        action = rng.choice(candidates)
        probe = env.fork()
        if probe.step(action).done:  # keep the episode going to the depth asked for
            continue
        obs = env.step(action)
        actions.append(action)
    return actions


def latencies(games, rng, steps_per_game):
    resets, small_steps, all_steps, forks, replays = [], [], [], {d: [] for d in DEPTHS}, {d: [] for d in DEPTHS}
    for game in tqdm(games, desc="latency", unit="game"):
        env = ALFWorldEnv(game, max_steps=1000)
        env.reset()  # first load translates the PDDL once per process
        for _ in range(3):
            resets.append(_timed(env.reset)[0])
        obs = env.reset()
        for _ in range(steps_per_game):
            action = rng.choice(obs.admissible_actions)
            seconds, obs = _timed(lambda: env.step(action))
            all_steps.append(seconds)
            if len(obs.admissible_actions) <= 15:
                small_steps.append(seconds)
            if obs.done:
                obs = env.reset()
        for depth in DEPTHS:
            actions = _random_walk(env, rng, depth)
            forks[depth].append(_timed(env.fork)[0])

            def replay():
                clone = ALFWorldEnv(game, max_steps=1000)
                clone.reset()
                for a in actions:
                    clone.step(a)

            replays[depth].append(_timed(replay)[0])
    return resets, small_steps, all_steps, forks, replays


def _episode(env, rng, steps):
    obs = env.reset()
    for _ in range(steps):
        obs = env.step(rng.choice(obs.admissible_actions))
        if obs.done:
            break


async def _remote_episode(pool, game, seed, steps):
    rng = random.Random(seed)
    env = await pool.create(ALFWorldEnv, game)
    obs = await env.reset()
    for _ in range(steps):
        obs = await env.step(rng.choice(obs.admissible_actions))
        if obs.done:
            break
    env.close()


def throughput(games, episodes, steps, workers):
    jobs = [(games[i % len(games)], i) for i in range(episodes)]
    start = time.perf_counter()
    for game, seed in tqdm(jobs, desc="1 process", unit="episode"):
        _episode(ALFWorldEnv(game), random.Random(seed), steps)
    single = time.perf_counter() - start

    pool = EnvPool(workers)

    async def run_all():
        await asyncio.gather(*(_remote_episode(pool, game, seed, steps) for game, seed in jobs))

    asyncio.run(run_all())  # warm: worker start-up and the per-process PDDL translation
    start = time.perf_counter()
    asyncio.run(run_all())
    pooled = time.perf_counter() - start
    pool.shutdown()
    return episodes / single, episodes / pooled


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--episode-steps", type=int, default=20)
    parser.add_argument("--steps-per-game", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    games = [g for split in ("train", "valid_seen", "valid_unseen") for g in find_games(split, "shipped")]

    resets, small_steps, all_steps, forks, replays = latencies(games, rng, args.steps_per_game)
    single_eps, pooled_eps = throughput(games, args.episodes, args.episode_steps, args.workers)
    step_median = statistics.median(all_steps)
    results = {
        "games": len(games),
        "reset": _summary(resets),
        "step_all": _summary(all_steps),
        "step_at_most_15_admissible": _summary(small_steps),
        "fork": {str(d): _summary(forks[d]) for d in DEPTHS},
        "replay_by_stepping": {str(d): _summary(replays[d]) for d in DEPTHS},
        "fork_depth20_in_steps": round(statistics.median(forks[20]) / step_median, 2),
        "fork_speedup_over_replay": {str(d): round(statistics.median(replays[d]) / statistics.median(forks[d]), 1) for d in DEPTHS},
        "episodes_per_s_single_process": round(single_eps, 2),
        f"episodes_per_s_pool_{args.workers}_workers": round(pooled_eps, 2),
        "pool_speedup": round(pooled_eps / single_eps, 2),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
