"""Envs in worker processes behind an async interface, so env work never blocks an event loop
(the rollout executors run inside OpenRLHF's vLLM actor). Works for any TextEnv."""

import asyncio
import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

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
        self._context = multiprocessing.get_context("spawn")
        self._workers = [ProcessPoolExecutor(1, mp_context=self._context) for _ in range(num_workers)]
        self._generation = [0] * num_workers  # bumped when a dead worker is replaced
        self._live = [0] * num_workers
        self._ids = itertools.count()

    async def _run(self, worker, fn, *args):
        try:
            return await asyncio.wrap_future(self._workers[worker].submit(fn, *args))
        except BrokenProcessPool:
            self._replace(worker)
            raise

    def _replace(self, worker):
        """A worker whose process died (a planner crash, an OOM kill) gets a new process; the envs
        it held are lost, the other workers' are not."""
        if self._workers[worker]._broken:
            self._workers[worker].shutdown(wait=False, cancel_futures=True)
            self._workers[worker] = ProcessPoolExecutor(1, mp_context=self._context)
            self._generation[worker] += 1
            self._live[worker] = 0

    async def create(self, env_factory, *args, **kwargs) -> "RemoteEnv":
        """Builds `env_factory(*args, **kwargs)` in the least busy worker (a dead one is replaced)."""
        worker = min(range(len(self._workers)), key=self._live.__getitem__)
        env_id = next(self._ids)
        self._live[worker] += 1  # before awaiting, so concurrent creates spread over the workers
        try:
            await self._run(worker, _create, env_id, env_factory, args, kwargs)
        except BrokenProcessPool:  # the worker had died: once more, on its replacement
            self._live[worker] += 1
            try:
                await self._run(worker, _create, env_id, env_factory, args, kwargs)
            except BaseException:
                self._live[worker] -= 1
                raise
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
        self._generation = pool._generation[worker]
        self._closed = False

    async def _remote(self, fn, *args):
        if self._closed:
            raise RuntimeError(f"env {self._id} is closed")
        if self._generation != self._pool._generation[self._worker]:
            raise RuntimeError(f"env {self._id} is lost: its worker process died")
        try:
            return await self._pool._run(self._worker, fn, self._id, *args)
        except BrokenProcessPool:
            raise RuntimeError(f"env {self._id} is lost: its worker process died") from None

    async def reset(self):
        return await self._remote(_call, "reset")

    async def step(self, action: str):
        return await self._remote(_call, "step", action)

    async def get(self, attribute: str):
        return await self._remote(_call, "__getattribute__", attribute)

    async def fork(self) -> "RemoteEnv":
        new_id = next(self._pool._ids)
        await self._remote(_fork, new_id)
        self._pool._live[self._worker] += 1
        return RemoteEnv(self._pool, self._worker, new_id)

    def close(self):
        """Frees the env in its worker (fire and forget)."""
        if not self._closed:
            self._closed = True
            if self._generation != self._pool._generation[self._worker]:
                return  # it went with its dead worker
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
        self._closed = False

    def _open_env(self, call):
        if self._closed:
            raise RuntimeError(f"{type(self.env).__name__}: {call}() after close()")
        return self.env

    async def reset(self):
        return self._open_env("reset").reset()

    async def step(self, action: str):
        return self._open_env("step").step(action)

    async def get(self, attribute: str):
        return getattr(self._open_env("get"), attribute)

    async def fork(self) -> "LocalEnv":
        return LocalEnv(self._open_env("fork").fork())

    def close(self):
        if not self._closed:
            self._closed = True
            if hasattr(self.env, "close"):
                self.env.close()
