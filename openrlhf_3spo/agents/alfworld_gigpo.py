"""ALFWorld, GiGPO: `--train.agent_func_path` this file with `--advantage_estimator gigpo`.

The same episodes as `alfworld_grpo.py` (B trajectories per task, one sample per step); each step is
trained with GiGPO's advantage: its trajectory's episode advantage plus the anchor-state step
advantage (`--spo3.gigpo_*`); settings in textenv.py.
"""

from openrlhf_3spo.agents.textenv import GRPOTextEnvExecutor


class AgentExecutor(GRPOTextEnvExecutor):
    env_name = "alfworld"
    advantage_estimator = "gigpo"
