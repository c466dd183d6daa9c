"""Pure 3SPO math: no Ray, no OpenRLHF."""

from .formulas import (
    ADVANTAGE_NORMS, adaptive_n, discounted_returns, gigpo_advantages, group_advantages, novelty_weight, state_score,
    step_reward, trajectory_advantages,
)
from .table import StateTable

__all__ = [
    "ADVANTAGE_NORMS",
    "StateTable",
    "adaptive_n",
    "discounted_returns",
    "gigpo_advantages",
    "group_advantages",
    "novelty_weight",
    "state_score",
    "step_reward",
    "trajectory_advantages",
]
