"""`LocalStateScores`: the state-score table in process, for tests and the CPU demo (no Ray)."""

import threading

from openrlhf_3spo.state.actor import StateScoreActor, pair_digest


class LocalStateScores:
    """`state.StateScoreClient` over one in-process actor. Ray runs an actor's calls one at a time;
    here a lock does, so concurrent threads lose no update."""

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
