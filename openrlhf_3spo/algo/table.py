"""StateTable: per-state visit and success counts, and the global trajectory counter t.

Keys are stored as 128-bit digests: a 32-hex-digit key (the envs' state digests) is its own digest,
any other string is hashed with blake2b. Rows are kept sorted by the digests' first 64 bits;
lookups sort the queried digests and binary-search them (cache-friendly), then check the other 64
bits: vectorised, and 32 bytes per state instead of a dict entry and a string object.
"""

import hashlib

import numpy as np

from .formulas import state_score, state_score_unchecked

STATE_DICT_VERSION = 2


def key_digests(keys):
    """(hi, lo) uint64 arrays of the keys' 128-bit digests."""
    if isinstance(keys, str):
        raise ValueError("keys must be a list of str, got a single str")
    keys = list(keys)
    try:
        if keys and set(map(len, keys)) != {32}:
            raise ValueError
        raw = bytes.fromhex("".join(keys))  # the common case: every key is a hex digest
        if len(raw) != 16 * len(keys):
            raise ValueError
    except (ValueError, TypeError):
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("keys must be str") from None
        raw = b"".join(
            bytes.fromhex(k) if len(k) == 32 and _is_hex(k) else hashlib.blake2b(k.encode("utf-8"), digest_size=16).digest()
            for k in keys
        )
    words = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1].copy()


def _is_hex(text):
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False


def _first_of_each(*columns):
    """Indices of the first occurrence of each distinct row of the given columns (lexicographic order)."""
    if len(columns[0]) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort(columns[::-1])
    sorted_cols = [c[order] for c in columns]
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any([c[1:] != c[:-1] for c in sorted_cols], axis=0)
    return order[first]


def won_flags(won):
    """Booleans or 0/1, nothing else: bool("False") would count a loss as a win."""
    values = list(won)
    for w in values:
        if not isinstance(w, (bool, np.bool_, int, np.integer)) or w not in (0, 1):
            raise ValueError(f"won must hold booleans (or 0/1), got {w!r}")
    return np.asarray(values, dtype=bool)


def digests_to_keys(hi, lo):
    words = np.stack([hi, lo], axis=1).astype(">u8")
    text = words.tobytes().hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


class StateTable:
    """Counts N_total and N_success per state key; scores states with eq. 1."""

    def __init__(self, alpha=50.0, xi=10.0, zeta=0.1, eps=1e-6):
        state_score(0, 0, 1, alpha, xi, zeta, eps)  # validates the parameters
        self.alpha, self.xi, self.zeta, self.eps = alpha, xi, zeta, eps
        self.t = 1
        self._set_rows(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros((0, 2), np.int64))

    def _set_rows(self, hi, lo, counts):
        """Rows sorted by `hi` (counts: N_total, N_success columns)."""
        order = np.argsort(hi, kind="stable")
        self._hi, self._lo, self._count = hi[order], lo[order], counts[order]

    def __len__(self):
        return len(self._hi)

    def _find(self, hi, lo):
        """The queries' sorted order, and the row of each query in that order (-1 where unseen).
        Rows with equal `hi` (a 2^-64 event) are scanned in a loop."""
        order = np.argsort(hi)
        hi, lo = hi[order], lo[order]
        rows = np.full(len(hi), -1, dtype=np.int64)
        pos = np.searchsorted(self._hi, hi)
        pending = np.arange(len(hi))
        while len(pending):
            p = pos[pending]
            inside = p < len(self._hi)
            pending, p = pending[inside], p[inside]
            same_hi = self._hi[p] == hi[pending]
            pending, p = pending[same_hi], p[same_hi]
            match = self._lo[p] == lo[pending]
            rows[pending[match]] = p[match]
            pending = pending[~match]
            pos[pending] += 1
        return order, rows

    def _rows(self, hi, lo):
        order, rows = self._find(hi, lo)
        unsorted = np.empty_like(rows)
        unsorted[order] = rows
        return unsorted

    def counts(self, keys):
        """(N_total, N_success) arrays for the keys; 0 where unseen."""
        order, rows = self._find(*key_digests(keys))
        counts = np.zeros((len(rows), 2), np.int64)
        if len(self):
            counts[order] = np.where(rows[:, None] >= 0, self._count[rows], 0)  # gathered in row order
        return counts[:, 0], counts[:, 1]

    def scores(self, keys, write_off=True):
        """Eq. 1 for each key at the current t; unseen keys score 1 (write_off: see `state_score`)."""
        return self.score_counts(*self.counts(keys), write_off=write_off)

    def score_counts(self, n_total, n_success, write_off=True):
        """Eq. 1 at the current t for counts this table returned."""
        return state_score_unchecked(n_total, n_success, self.t, self.alpha, self.xi, self.zeta, self.eps, write_off)

    def all_scores(self):
        """Eq. 1 for every state in the table (for metrics), without looking keys up."""
        return state_score_unchecked(self._count[:, 0], self._count[:, 1], self.t, self.alpha, self.xi, self.zeta, self.eps)

    def n_total(self, keys):
        return self.counts(keys)[0]

    def n_success(self, keys):
        return self.counts(keys)[1]

    def record(self, trajectory_keys, won):
        """Records finished trajectories: every distinct key of a trajectory gets N_total += 1,
        and N_success += 1 if it won; t advances by one per trajectory."""
        if isinstance(trajectory_keys, (str, bytes)) or len(trajectory_keys) != len(won):
            raise ValueError(
                f"mismatched lengths: trajectory_keys has {len(trajectory_keys)} trajectories, won has {len(won)}"
            )
        lengths = [len(keys) if isinstance(keys, (list, tuple)) else -1 for keys in trajectory_keys]
        if min(lengths, default=0) < 0:
            raise ValueError("trajectory_keys must hold lists of str")
        try:
            hi, lo = key_digests([k for keys in trajectory_keys for k in keys])
        except ValueError:
            raise ValueError("trajectory_keys must hold lists of str") from None
        trajectory = np.repeat(np.arange(len(lengths)), lengths)
        visits = _first_of_each(trajectory, hi, lo)  # distinct keys per trajectory
        trajectory, hi, lo = trajectory[visits], hi[visits], lo[visits]
        rows = self._rows(hi, lo)
        new = np.flatnonzero(rows < 0)
        if len(new):
            fresh = new[_first_of_each(hi[new], lo[new])]
            self._set_rows(
                np.concatenate([self._hi, hi[fresh]]),
                np.concatenate([self._lo, lo[fresh]]),
                np.concatenate([self._count, np.zeros((len(fresh), 2), np.int64)]),
            )
            rows = self._rows(hi, lo)  # rows moved
        won = won_flags(won)
        self._count[:, 0] += np.bincount(rows, minlength=len(self))
        self._count[:, 1] += np.bincount(rows[won[trajectory]], minlength=len(self))
        self.t += len(trajectory_keys)

    def state_dict(self):
        return {
            "version": STATE_DICT_VERSION,
            "keys": digests_to_keys(self._hi, self._lo),
            "n_total": self._count[:, 0].copy(),
            "n_success": self._count[:, 1].copy(),
            "t": self.t,
        }

    def load_state_dict(self, state):
        missing = {"version", "keys", "n_total", "n_success", "t"} - set(state)
        if missing:
            raise ValueError(f"state dict lacks {sorted(missing)}")
        if state["version"] != STATE_DICT_VERSION:
            raise ValueError(f"state dict version {state['version']} is not {STATE_DICT_VERSION}")
        hi, lo = key_digests(state["keys"])
        n_total = np.asarray(state["n_total"], dtype=np.int64)
        n_success = np.asarray(state["n_success"], dtype=np.int64)
        if not len(hi) == len(n_total) == len(n_success):
            raise ValueError(
                f"mismatched lengths: keys {len(hi)}, n_total {len(n_total)}, n_success {len(n_success)}"
            )
        if len(_first_of_each(hi, lo)) != len(hi):
            raise ValueError("state dict has duplicate keys")
        if np.any(n_success < 0) or np.any(n_success > n_total):
            raise ValueError("state dict counts must satisfy 0 <= n_success <= n_total")
        if int(state["t"]) < 1:
            raise ValueError(f"state dict t must be >= 1, got {state['t']!r}")
        self._set_rows(hi, lo, np.stack([n_total, n_success], axis=1))
        self.t = int(state["t"])
