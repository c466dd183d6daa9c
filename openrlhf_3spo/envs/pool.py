"""Envs in worker processes behind an async interface, so env work never blocks an event loop
(the rollout executors run inside OpenRLHF's vLLM actor). Works for any TextEnv."""

import asyncio
import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

# ---- worker side: each worker process keeps its envs by id -----------------------------------

_ENVS = {}


def _create(env_id, env_factory, args, kwargs):
    _ENVS[env_id] = env_factory(*args, **kwargs)


def _call(env_id, method, *args):
    return getattr(_ENVS[env_id], method)(*args)


def _fork(env_id, new_id):
    _ENVS[new_id] = _ENVS[env_id].fork()


def _close(env_id):
    env = _ENVS.pop(env_id, None)
    if env is not None and hasattr(env, "close"):
        env.close()


# ---- caller side -------------------------------------------------------------------------------


class EnvPool:
    """`num_workers` single-process executors; an env and its forks stay in one worker."""

    def __init__(self, num_workers: int):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        # spawn: forking a process that runs vLLM and Ray threads is unsafe
        context = multiprocessing.get_context("spawn")
        self._workers = [ProcessPoolExecutor(1, mp_context=context) for _ in range(num_workers)]
        self._live = [0] * num_workers
        self._ids = itertools.count()

    async def _run(self, worker, fn, *args):
        return await asyncio.wrap_future(self._workers[worker].submit(fn, *args))

    async def create(self, env_factory, *args, **kwargs) -> "RemoteEnv":
        """Builds `env_factory(*args, **kwargs)` in the least busy worker."""
        worker = min(range(len(self._workers)), key=self._live.__getitem__)
        env_id = next(self._ids)
        self._live[worker] += 1  # before awaiting, so concurrent creates spread over the workers
        try:
            await self._run(worker, _create, env_id, env_factory, args, kwargs)
        except BaseException:
            self._live[worker] -= 1
            raise
        return RemoteEnv(self, worker, env_id)

    def shutdown(self):
        for executor in self._workers:
            executor.shutdown(wait=True, cancel_futures=True)


class RemoteEnv:
    """Async handle on an env living in a worker process."""

    def __init__(self, pool: EnvPool, worker: int, env_id: int):
        self._pool, self._worker, self._id = pool, worker, env_id
        self._closed = False

    async def reset(self):
        return await self._pool._run(self._worker, _call, self._id, "reset")

    async def step(self, action: str):
        return await self._pool._run(self._worker, _call, self._id, "step", action)

    async def get(self, attribute: str):
        return await self._pool._run(self._worker, _call, self._id, "__getattribute__", attribute)

    async def fork(self) -> "RemoteEnv":
        new_id = next(self._pool._ids)
        await self._pool._run(self._worker, _fork, self._id, new_id)
        self._pool._live[self._worker] += 1
        return RemoteEnv(self._pool, self._worker, new_id)

    def close(self):
        """Frees the env in its worker (fire and forget)."""
        if not self._closed:
            self._closed = True
            self._pool._live[self._worker] -= 1
            try:
                self._pool._workers[self._worker].submit(_close, self._id)
            except RuntimeError:  # the pool is already shut down
                pass

    def __del__(self):
        self.close()


class LocalEnv:
    """The async interface of RemoteEnv over an env in this process (tests, the CPU demo).
    Its calls block: use it where nothing else shares the event loop."""

    def __init__(self, env):
        self.env = env

    async def reset(self):
        return self.env.reset()

    async def step(self, action: str):
        return self.env.step(action)

    async def get(self, attribute: str):
        return getattr(self.env, attribute)

    async def fork(self) -> "LocalEnv":
        return LocalEnv(self.env.fork())

    def close(self):
        if hasattr(self.env, "close"):
            self.env.close()
