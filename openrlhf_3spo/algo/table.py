"""StateTable: per-state visit and success counts, and the global trajectory counter t."""

import numpy as np

from .formulas import state_score

STATE_DICT_VERSION = 1


class StateTable:
    """Counts N_total and N_success per state key; scores states with eq. 1.

    Keys map to rows of growable numpy arrays, so lookups and records are vectorised.
    """

    def __init__(self, alpha=50.0, xi=10.0, zeta=0.1, eps=1e-6):
        state_score(0, 0, 1, alpha, xi, zeta, eps)  # validates the parameters
        self.alpha, self.xi, self.zeta, self.eps = alpha, xi, zeta, eps
        self._index: dict[str, int] = {}
        self._n_total = np.zeros(1024, dtype=np.int64)
        self._n_success = np.zeros(1024, dtype=np.int64)
        self.t = 1

    def __len__(self):
        return len(self._index)

    def _rows(self, keys):
        if isinstance(keys, str):
            raise ValueError("keys must be a list of str, got a single str")
        get = self._index.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def _counts(self, keys):
        rows = self._rows(keys)
        seen = rows >= 0
        n_total = np.where(seen, self._n_total[rows], 0)
        n_success = np.where(seen, self._n_success[rows], 0)
        return n_total, n_success

    def scores(self, keys):
        """Eq. 1 for each key at the current t; unseen keys score 1."""
        n_total, n_success = self._counts(keys)
        return state_score(n_total, n_success, self.t, self.alpha, self.xi, self.zeta, self.eps)

    def n_total(self, keys):
        return self._counts(keys)[0]

    def n_success(self, keys):
        return self._counts(keys)[1]

    def record(self, trajectory_keys, won):
        """Records finished trajectories: every distinct key of a trajectory gets N_total += 1,
        and N_success += 1 if it won; t advances by one per trajectory."""
        if isinstance(trajectory_keys, (str, bytes)) or len(trajectory_keys) != len(won):
            raise ValueError(
                f"mismatched lengths: trajectory_keys has {len(trajectory_keys)} trajectories, won has {len(won)}"
            )
        distinct = [dict.fromkeys(keys) for keys in trajectory_keys]  # dedup in visit order: deterministic rows
        flat = [k for keys in distinct for k in keys]
        if not all(isinstance(k, str) for k in flat):
            raise ValueError("trajectory_keys must hold lists of str")
        flat_won = np.repeat(np.asarray(won, dtype=bool), [len(keys) for keys in distinct])
        for k in flat:
            if k not in self._index:
                self._index[k] = len(self._index)
        self._grow(len(self._index))
        rows = self._rows(flat)
        np.add.at(self._n_total, rows, 1)
        np.add.at(self._n_success, rows[flat_won], 1)
        self.t += len(trajectory_keys)

    def _grow(self, size):
        if size <= len(self._n_total):
            return
        capacity = max(size, 2 * len(self._n_total))
        for name in ("_n_total", "_n_success"):
            grown = np.zeros(capacity, dtype=np.int64)
            old = getattr(self, name)
            grown[: len(old)] = old
            setattr(self, name, grown)

    def state_dict(self):
        size = len(self._index)
        return {
            "version": STATE_DICT_VERSION,
            "keys": list(self._index),
            "n_total": self._n_total[:size].copy(),
            "n_success": self._n_success[:size].copy(),
            "t": self.t,
        }

    def load_state_dict(self, state):
        missing = {"version", "keys", "n_total", "n_success", "t"} - set(state)
        if missing:
            raise ValueError(f"state dict lacks {sorted(missing)}")
        if state["version"] != STATE_DICT_VERSION:
            raise ValueError(f"state dict version {state['version']} is not {STATE_DICT_VERSION}")
        keys = list(state["keys"])
        n_total = np.asarray(state["n_total"], dtype=np.int64)
        n_success = np.asarray(state["n_success"], dtype=np.int64)
        if not len(keys) == len(n_total) == len(n_success):
            raise ValueError(
                f"mismatched lengths: keys {len(keys)}, n_total {len(n_total)}, n_success {len(n_success)}"
            )
        if len(set(keys)) != len(keys):
            raise ValueError("state dict has duplicate keys")
        if np.any(n_success < 0) or np.any(n_success > n_total):
            raise ValueError("state dict counts must satisfy 0 <= n_success <= n_total")
        if int(state["t"]) < 1:
            raise ValueError(f"state dict t must be >= 1, got {state['t']!r}")
        self._index = {k: i for i, k in enumerate(keys)}
        self._n_total = np.zeros(max(1024, len(keys)), dtype=np.int64)
        self._n_success = np.zeros_like(self._n_total)
        self._n_total[: len(keys)] = n_total
        self._n_success[: len(keys)] = n_success
        self.t = int(state["t"])
