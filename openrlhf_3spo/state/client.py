"""`StateScores`: callers' handle on the state-score table on Ray, one actor or K shards by key
hash, found by name from any process (rollout actors, the trainer)."""

import asyncio
import os
import zlib

import numpy as np
import ray

from openrlhf_3spo.algo.table import STATE_DICT_VERSION
from openrlhf_3spo.state.actor import StateScoreActor, load_actor_snapshot, pair_digest


def shard_of(key: str, num_shards: int) -> int:
    """Stable across processes and nodes (crc32, not the salted hash())."""
    return zlib.crc32(key.encode("utf-8")) % num_shards


class StateScores:
    """The table on Ray: one actor, or K shards by key hash, behind `state.StateScoreClient`."""

    def __init__(self, actors):
        self.actors = list(actors)

    @classmethod
    def create(cls, name, num_shards=1, snapshot_dir=None, **table_params):
        """Starts (or finds) the named actors; Ray restarts a crashed one, which reloads its snapshot."""
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        remote = ray.remote(StateScoreActor)
        actors = []
        for shard in range(num_shards):
            shard_dir = os.path.join(snapshot_dir, f"shard-{shard}") if snapshot_dir else None
            options = dict(name=f"{name}-shard{shard}", get_if_exists=True, max_restarts=-1, max_task_retries=3)
            # num_cpus=0: bookkeeping only; SPREAD: shards land on different nodes
            options.update(num_cpus=0, scheduling_strategy="SPREAD")
            actors.append(remote.options(**options).remote(snapshot_dir=shard_dir, **table_params))
        return cls(actors)

    @classmethod
    def connect(cls, name, num_shards=1):
        """The handle of actors another process created (rollout actors, the trainer)."""
        return cls([ray.get_actor(f"{name}-shard{shard}") for shard in range(num_shards)])

    def _split(self, keys):
        """Per shard: the positions of its keys in `keys`."""
        if len(self.actors) == 1:
            return [np.arange(len(keys))]
        shard = np.fromiter((shard_of(k, len(self.actors)) for k in keys), dtype=np.int64, count=len(keys))
        return [np.flatnonzero(shard == s) for s in range(len(self.actors))]

    def _lookup_refs(self, keys, version):
        parts = self._split(keys)
        refs = [a.lookup.remote([keys[i] for i in idx], version) for a, idx in zip(self.actors, parts) if len(idx)]
        return parts, refs

    @staticmethod
    def _merge(keys, parts, results):
        merged = {
            "score": np.ones(len(keys)), "raw_score": np.ones(len(keys)), "n_total": np.zeros(len(keys), np.int64),
        }
        for idx, result in zip([p for p in parts if len(p)], results):
            for name in merged:
                merged[name][idx] = result[name]
        return merged

    def lookup(self, keys, version=None):
        parts, refs = self._lookup_refs(keys, version)
        return self._merge(keys, parts, ray.get(refs))

    async def lookup_async(self, keys, version=None):
        """For code on an event loop (the rollout executors): awaits instead of blocking."""
        parts, refs = self._lookup_refs(keys, version)
        return self._merge(keys, parts, await asyncio.gather(*refs))

    def record(self, trajectory_keys, won):
        if isinstance(trajectory_keys, (str, bytes)) or len(trajectory_keys) != len(won):
            raise ValueError(
                f"mismatched lengths: trajectory_keys has {len(trajectory_keys)} trajectories, won has {len(won)}"
            )
        if len(self.actors) == 1:
            return ray.get(self.actors[0].record.remote(trajectory_keys, won))
        # every shard gets every trajectory (maybe with no keys of its own): t is global
        per_shard = [[[] for _ in trajectory_keys] for _ in self.actors]
        for i, keys in enumerate(trajectory_keys):
            for k in keys:
                per_shard[shard_of(k, len(self.actors))][i].append(k)
        ray.get([a.record.remote(part, won) for a, part in zip(self.actors, per_shard)])

    def current_version(self):
        return ray.get(self.actors[0].current_version.remote())

    def advance(self):
        versions = set(ray.get([a.advance.remote() for a in self.actors]))
        if len(versions) != 1:
            raise RuntimeError(f"state-score shards disagree on the version: {sorted(versions)}")
        counters = ray.get([a.trajectory_counter.remote() for a in self.actors])
        if len(set(counters)) > 1:  # t is one number for the whole table, whatever the shards
            ray.get([a.set_trajectory_counter.remote(max(counters)) for a in self.actors])
        return versions.pop()

    def _pair_calls(self, method, pairs):
        """(positions, ref) per shard holding some of the (state key, action) pairs."""
        parts = self._split([state_key for state_key, _ in pairs])
        return [
            (idx, getattr(self.actors[s], method).remote([pair_digest(*pairs[i]) for i in idx]))
            for s, idx in enumerate(parts)
            if len(idx)
        ]

    @staticmethod
    def _merge_tried(n, calls, results):
        tried = np.zeros(n, dtype=bool)
        for (idx, _), result in zip(calls, results):
            tried[idx] = result
        return tried.tolist()

    def mark_tried(self, pairs):
        ray.get([ref for _, ref in self._pair_calls("mark_tried", pairs)])

    async def mark_tried_async(self, pairs):
        await asyncio.gather(*(ref for _, ref in self._pair_calls("mark_tried", pairs)))

    def is_tried(self, pairs):
        calls = self._pair_calls("is_tried", pairs)
        return self._merge_tried(len(pairs), calls, ray.get([ref for _, ref in calls]))

    async def is_tried_async(self, pairs):
        calls = self._pair_calls("is_tried", pairs)
        return self._merge_tried(len(pairs), calls, await asyncio.gather(*(ref for _, ref in calls)))

    def stats(self):
        shards = ray.get([a.stats.remote() for a in self.actors])
        states = sum(s["unique_states"] for s in shards)
        return {
            "version": shards[0]["version"],
            "t": max(s["t"] for s in shards),
            "unique_states": states,
            "mean_score": sum(s["mean_score"] * s["unique_states"] for s in shards) / states if states else 1.0,
            "truncated_states": sum(s["truncated_states"] for s in shards),
            "tried_pairs": sum(s["tried_pairs"] for s in shards),
            "lost_records": sum(s["lost_records"] for s in shards),
        }

    def save(self, directory):
        return ray.get([a.save.remote(os.path.join(directory, f"shard-{i}")) for i, a in enumerate(self.actors)])

    def load(self, directory):
        """A table saved by any number of shards: with another number than this handle's, the
        counts are merged and split again by key (tried pairs, keyed by digest, go to every shard)."""
        saved = sorted(d for d in os.listdir(directory) if d.startswith("shard-"))
        if len(saved) == len(self.actors):
            ray.get([a.load.remote(os.path.join(directory, f"shard-{i}")) for i, a in enumerate(self.actors)])
            return
        if not saved:
            raise ValueError(f"no state-table shards (shard-<i>/) in {directory}")
        parts = [load_actor_snapshot(os.path.join(directory, d)) for d in saved]
        keys = [k for table, _, _ in parts for k in table.state_dict()["keys"]]
        counts = {name: np.concatenate([table.state_dict()[name] for table, _, _ in parts]) for name in ("n_total", "n_success")}
        t = max(table.t for table, _, _ in parts)
        meta = {"version": max(m["version"] for _, m, _ in parts), "applied": max(m["applied"] for _, m, _ in parts)}
        tried = set().union(*(pairs for _, _, pairs in parts))
        owner = np.array([shard_of(k, len(self.actors)) for k in keys], dtype=np.int64)
        refs = []
        for i, actor in enumerate(self.actors):
            mine = np.flatnonzero(owner == i)
            state = {"version": STATE_DICT_VERSION, "keys": [keys[j] for j in mine], "t": t,
                     "n_total": counts["n_total"][mine], "n_success": counts["n_success"][mine]}
            refs.append(actor.load_state.remote(state, meta, tried))
        ray.get(refs)

    def content_hash(self):
        return ray.get([a.content_hash.remote() for a in self.actors])
