"""The state-score table as a named Ray actor, reachable from the rollout actors and the trainer.

Lagged statistics (DESIGN.md): reads name a snapshot version, and scores stay fixed for that version;
`record` stages finished trajectories, and `advance` applies them and starts the next version. Every
call is batched (one call per decision point or per batch). With `snapshot_dir`, each advance writes a
snapshot there and a one-line journal entry per record call; a restarted actor reloads the snapshot
and reports how many recorded trajectories it lost.
"""

import asyncio
import hashlib
import logging
import os
import threading
import zlib

import numpy as np
import ray

from openrlhf_3spo.algo import StateTable, adaptive_n
from openrlhf_3spo.algo.table import STATE_DICT_VERSION, won_flags
from openrlhf_3spo.state.snapshot import FILE_NAME, load_snapshot, save_snapshot

logger = logging.getLogger(__name__)
JOURNAL = "journal.txt"


def pair_digest(state_key: str, action: str) -> bytes:
    return hashlib.blake2b(f"{state_key}\x00{action}".encode("utf-8"), digest_size=16).digest()


class StateScoreActor:
    """Owns one StateTable (or one shard of it). Wrap with ray.remote; see `create_state_actors`."""

    def __init__(self, alpha=50.0, xi=10.0, zeta=0.1, eps=1e-6, g_max=8, snapshot_dir=None):
        self.g_max = int(adaptive_n(1.0, g_max))  # validates g_max
        self.snapshot_dir = snapshot_dir
        self.table = StateTable(alpha, xi, zeta, eps)
        self.version = 0
        self.tried = set()
        self.staged_keys, self.staged_won = [], []
        self.received = 0  # trajectories received by record(), staged or applied
        self.lost_records = 0
        if snapshot_dir:
            os.makedirs(snapshot_dir, exist_ok=True)
            if os.path.exists(os.path.join(snapshot_dir, FILE_NAME)):
                self._restore(snapshot_dir)

    # ---- reads -------------------------------------------------------------------------------

    def _check_version(self, version):
        if version is not None and version != self.version:
            raise ValueError(f"snapshot version {version} is not the current version {self.version}")

    def lookup(self, keys, version=None):
        """For many keys at one snapshot version: the score (eq. 1), the score without the write-off
        rule (`raw_score`), adaptive n and N_total."""
        self._check_version(version)
        n_total, n_success = self.table.counts(keys)
        score = self.table.score_counts(n_total, n_success)
        raw_score = self.table.score_counts(n_total, n_success, write_off=False)
        return {"score": score, "raw_score": raw_score, "n": adaptive_n(score, self.g_max), "n_total": n_total}

    def current_version(self):
        return self.version

    def trajectory_counter(self):
        return self.table.t

    def set_trajectory_counter(self, t):
        """Shards agree on t: one that was restarted lost the records staged since its snapshot."""
        self.table.t = t
        if self.snapshot_dir:
            self.save(self.snapshot_dir)

    def is_tried(self, pair_digests):
        return [d in self.tried for d in pair_digests]

    def mark_tried(self, pair_digests):
        self.tried.update(pair_digests)

    def stats(self):
        scores = self.table.all_scores()  # a metric per training step: no key conversion
        n = adaptive_n(scores, self.g_max)
        return {
            "version": self.version,
            "t": self.table.t,
            "unique_states": len(self.table),
            "mean_score": float(scores.mean()) if len(scores) else 1.0,
            "n_histogram": np.bincount(n, minlength=self.g_max + 1).tolist(),
            "truncated_states": int((scores == 0).sum()),
            "tried_pairs": len(self.tried),
            "staged_trajectories": len(self.staged_keys),
            "lost_records": self.lost_records,
        }

    # ---- writes ------------------------------------------------------------------------------

    def record(self, trajectory_keys, won):
        """Stages finished trajectories; they count from the next version on."""
        if isinstance(trajectory_keys, (str, bytes)) or len(trajectory_keys) != len(won):
            raise ValueError(
                f"mismatched lengths: trajectory_keys has {len(trajectory_keys)} trajectories, won has {len(won)}"
            )
        if not all(isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys) for keys in trajectory_keys):
            raise ValueError("trajectory_keys must be a list of lists of str")
        won = won_flags(won)
        self.staged_keys.extend(list(keys) for keys in trajectory_keys)
        self.staged_won.extend(bool(w) for w in won)
        self.received += len(won)
        if self.snapshot_dir:
            with open(os.path.join(self.snapshot_dir, JOURNAL), "a") as f:
                f.write(f"{self.received}\n")

    def advance(self):
        """Applies the staged trajectories, starts the next version, and snapshots if configured."""
        self.table.record(self.staged_keys, self.staged_won)
        self.staged_keys, self.staged_won = [], []
        self.version += 1
        if self.snapshot_dir:
            self.save(self.snapshot_dir)
        return self.version

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, directory):
        """Snapshot of the applied table, t, version and tried pairs (staged records are not in it)."""
        applied = self.received - len(self.staged_keys)
        return save_snapshot(directory, self.table, {"version": self.version, "applied": applied}, self.tried)

    def load(self, directory):
        table, meta, tried = load_actor_snapshot(directory)
        self.load_state(table.state_dict(), meta, tried)

    def load_state(self, state, meta, tried):
        """Saved counts, t, version and tried pairs; the score parameters stay this run's own (a
        resumed run with other --spo3.alpha/xi/zeta scores the restored counts with them)."""
        self.table.load_state_dict(state)
        self.tried = set(tried)
        self.version, self.received = meta["version"], meta["applied"]
        self.staged_keys, self.staged_won = [], []

    def content_hash(self):
        """A digest of the applied table, t, version and tried pairs: equal tables give equal hashes."""
        state = self.table.state_dict()
        digest = hashlib.blake2b(digest_size=16)
        order = np.argsort(np.array(state["keys"], dtype=object)) if state["keys"] else []
        for i in order:
            digest.update(f"{state['keys'][i]}:{state['n_total'][i]}:{state['n_success'][i]};".encode())
        digest.update(f"t={state['t']};v={self.version};".encode())
        for pair in sorted(self.tried):
            digest.update(pair)
        return digest.hexdigest()

    def _restore(self, directory):
        self.load(directory)
        journal = os.path.join(directory, JOURNAL)
        if os.path.exists(journal):
            with open(journal) as f:
                lines = f.read().split()
            last = int(lines[-1]) if lines else 0
            self.lost_records = max(0, last - self.received)
            self.received = max(self.received, last)
        if self.lost_records:
            logger.warning(
                "state-score actor restarted from %s: %d recorded trajectories since that snapshot were lost",
                directory,
                self.lost_records,
            )


def shard_of(key: str, num_shards: int) -> int:
    """Stable across processes and nodes (crc32, not the salted hash())."""
    return zlib.crc32(key.encode("utf-8")) % num_shards


class StateScores:
    """Callers' handle on the table: one actor, or K shards by key hash with the same API."""

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
            "score": np.ones(len(keys)), "raw_score": np.ones(len(keys)),
            "n": np.zeros(len(keys), np.int64), "n_total": np.zeros(len(keys), np.int64),
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
            "n_histogram": np.sum([s["n_histogram"] for s in shards], axis=0).tolist(),
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


def load_actor_snapshot(directory):
    """`load_snapshot`, for an actor's snapshot: its meta holds the version and applied count."""
    table, meta, tried = load_snapshot(directory)
    if any(not isinstance(meta.get(k), int) or meta[k] < 0 for k in ("version", "applied")):
        raise ValueError(f"state-table snapshot in {directory} is not an actor's: its meta must hold whole "
                         f"numbers version and applied >= 0, got {meta!r}")
    return table, meta, tried


class LocalStateScores:
    """StateScores' interface over one in-process actor: tests and the CPU demo, no Ray. Ray runs an
    actor's calls one at a time; here a lock does, so concurrent threads lose no update."""

    def __init__(self, **table_params):
        self.actor = StateScoreActor(**table_params)
        self._lock = threading.Lock()

    def _call(self, method, *args):
        with self._lock:
            return getattr(self.actor, method)(*args)

    def lookup(self, keys, version=None):
        return self._call("lookup", keys, version)

    async def lookup_async(self, keys, version=None):
        return self._call("lookup", keys, version)

    async def is_tried_async(self, pairs):
        return self._call("is_tried", [pair_digest(*p) for p in pairs])

    async def mark_tried_async(self, pairs):
        self._call("mark_tried", [pair_digest(*p) for p in pairs])

    def record(self, trajectory_keys, won):
        self._call("record", trajectory_keys, won)

    def advance(self):
        return self._call("advance")

    def current_version(self):
        return self._call("current_version")

    def stats(self):
        return self._call("stats")
