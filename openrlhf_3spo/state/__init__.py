"""The state-score table's home at training time: its owner (`actor.StateScoreActor`), reached on Ray
(`client.StateScores`, sharded by key) or in process (`local.LocalStateScores`), and its snapshots
on disk (`snapshot`). Both clients satisfy `StateScoreClient`."""

from typing import Protocol, runtime_checkable


@runtime_checkable
class StateScoreClient(Protocol):
    """What the executors, the samples generator and the demo use of the table."""

    def lookup(self, keys, version=None) -> dict: ...  # score, raw_score, n_total: arrays over keys

    async def lookup_async(self, keys, version=None) -> dict: ...

    async def is_tried_async(self, pairs) -> list: ...  # pairs: (state key, action)

    async def mark_tried_async(self, pairs) -> None: ...

    def record(self, trajectory_keys, won) -> None: ...  # staged: counts from the next version on

    def advance(self) -> int: ...  # applies the staged records; the next version

    def current_version(self) -> int: ...

    def stats(self) -> dict: ...
