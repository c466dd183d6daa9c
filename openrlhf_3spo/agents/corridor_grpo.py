"""The corridor, step-wise GRPO: `--train.agent_func_path` this file with `--advantage_estimator step_grpo`.

The same episodes as `alfworld_grpo.py`, on the corridor (`corridor_3spo.py`).
"""

from openrlhf_3spo.agents.textenv import GRPOTextEnvExecutor


class AgentExecutor(GRPOTextEnvExecutor):
    env_name = "corridor"
