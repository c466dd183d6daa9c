"""EnvPool: envs in worker processes behind async calls; the event loop stays free."""

import asyncio

import pytest

from openrlhf_3spo.envs.alfworld import ALFWorldEnv, find_games, load_game
from openrlhf_3spo.envs.pool import EnvPool

GAMES = find_games("train", "shipped")[:3]


@pytest.fixture(scope="module")
def pool():
    pool = EnvPool(2)
    yield pool
    pool.shutdown()


def test_remote_envs_play_like_local_ones(pool):
    async def play(game):
        env = await pool.create(ALFWorldEnv, game)
        first = await env.reset()
        last = None
        for action in load_game(game)["walkthrough"]:
            last = await env.step(action)
        env.close()
        return first, last

    async def main():
        return await asyncio.gather(*(play(g) for g in GAMES))

    results = asyncio.run(main())
    for game, (first, last) in zip(GAMES, results):
        local = ALFWorldEnv(game).reset()
        assert first == local
        assert last.won and last.reward == 10.0


def test_remote_fork_is_independent(pool):
    async def main():
        env = await pool.create(ALFWorldEnv, GAMES[0])
        await env.reset()
        walkthrough = load_game(GAMES[0])["walkthrough"]
        await env.step(walkthrough[0])
        clone = await env.fork()
        assert await clone.get("task") == await env.get("task")
        on_clone = [await clone.step(a) for a in walkthrough[1:]]
        on_env = await env.step(walkthrough[1])
        return on_clone, on_env

    on_clone, on_env = asyncio.run(main())
    assert on_clone[-1].won and on_env.state_key == on_clone[0].state_key and not on_env.won


def test_env_work_does_not_block_the_event_loop(pool):
    events = []

    async def ticker(stop):
        while not stop.is_set():
            events.append("tick")
            await asyncio.sleep(0)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0)
        events.append("work starts")
        envs = [await pool.create(ALFWorldEnv, g) for g in GAMES]
        await asyncio.gather(*(e.reset() for e in envs))
        events.append("work ends")
        stop.set()
        await task

    asyncio.run(main())
    # the loop kept running other tasks while the workers loaded and reset the games: blocking calls
    # would leave at most one tick per await between these two events
    during = events[events.index("work starts") + 1 : events.index("work ends")]
    assert during.count("tick") > 10 * (len(GAMES) + 1), events.count("tick")
def test_worker_errors_reach_the_caller(pool, tmp_path):
    async def main():
        await pool.create(ALFWorldEnv, str(tmp_path / "missing.tw-pddl"))

    with pytest.raises(ValueError, match="missing.tw-pddl: file not found"):
        asyncio.run(main())


def test_pool_size_is_checked():
    with pytest.raises(ValueError, match="num_workers"):
        EnvPool(0)


def test_concurrent_creates_spread_over_workers(pool):
    async def main():
        return await asyncio.gather(*(pool.create(ALFWorldEnv, g) for g in GAMES[:2]))

    envs = asyncio.run(main())
    assert sorted(e._worker for e in envs) == [0, 1]
    for e in envs:
        e.close()


def test_a_dead_worker_is_replaced_and_its_envs_fail_clearly():
    """A worker killed (a planner crash, an OOM kill) must not break later creates, nor the other
    worker's envs; the envs it held give one clear error."""
    import os
    import signal

    pool = EnvPool(2)

    async def main():
        first, second = await pool.create(ALFWorldEnv, GAMES[0]), await pool.create(ALFWorldEnv, GAMES[1])
        await first.reset()
        await second.reset()
        for pid in list(pool._workers[first._worker]._processes):
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        with pytest.raises(RuntimeError, match="lost: its worker process died"):
            await first.step("look")
        created = [await pool.create(ALFWorldEnv, GAMES[2]) for _ in range(4)]  # every create works
        observations = [await env.reset() for env in created]
        survivor = await second.step("look")  # the other worker's env lives on
        first.close()
        with pytest.raises(RuntimeError, match="closed"):
            await first.step("look")
        return observations, survivor

    try:
        observations, survivor = asyncio.run(main())
    finally:
        pool.shutdown()
    assert len(observations) == 4 and all(o.admissible_actions for o in observations) and survivor.valid
