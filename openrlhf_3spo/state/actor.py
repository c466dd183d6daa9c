"""The state-score table's owner: `StateScoreActor`, run as a named Ray actor (`client.StateScores`)
or in process (`local.LocalStateScores`).

Lagged statistics (DESIGN.md): reads name a snapshot version, and scores stay fixed for that version;
`record` stages finished trajectories, and `advance` applies them and starts the next version. Every
call is batched (one call per decision point or per batch). With `snapshot_dir`, each advance writes a
snapshot there and a one-line journal entry per record call; a restarted actor reloads the snapshot
and reports how many recorded trajectories it lost.
"""

import hashlib
import logging
import os

import numpy as np

from openrlhf_3spo.algo import StateTable
from openrlhf_3spo.algo.table import STATE_DICT_VERSION, won_flags
from openrlhf_3spo.state.snapshot import FILE_NAME, load_snapshot, save_snapshot

logger = logging.getLogger(__name__)
JOURNAL = "journal.txt"


def pair_digest(state_key: str, action: str) -> bytes:
    return hashlib.blake2b(f"{state_key}\x00{action}".encode("utf-8"), digest_size=16).digest()


class StateScoreActor:
    """Owns one StateTable (or one shard of it); `client.StateScores` runs it on Ray."""

    def __init__(self, alpha=50.0, xi=10.0, zeta=0.1, eps=1e-6, snapshot_dir=None):
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
        rule (`raw_score`) and N_total. (n is the executor's: it owns g_max and the n rule.)"""
        self._check_version(version)
        n_total, n_success = self.table.counts(keys)
        score = self.table.score_counts(n_total, n_success)
        raw_score = self.table.score_counts(n_total, n_success, write_off=False)
        return {"score": score, "raw_score": raw_score, "n_total": n_total}

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
        return {
            "version": self.version,
            "t": self.table.t,
            "unique_states": len(self.table),
            "mean_score": float(scores.mean()) if len(scores) else 1.0,
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


def load_actor_snapshot(directory):
    """`load_snapshot`, for an actor's snapshot: its meta holds the version and applied count."""
    table, meta, tried = load_snapshot(directory)
    if any(not isinstance(meta.get(k), int) or meta[k] < 0 for k in ("version", "applied")):
        raise ValueError(f"state-table snapshot in {directory} is not an actor's: its meta must hold whole "
                         f"numbers version and applied >= 0, got {meta!r}")
    return table, meta, tried
