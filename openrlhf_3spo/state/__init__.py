"""The state-score table's home at training time: snapshots on disk and the Ray actor(s)."""
