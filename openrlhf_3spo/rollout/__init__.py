"""The 3SPO rollout executor: adaptive, branching, ranked-backtracking rollout over any TextEnv."""
