"""The corridor, GiGPO: `--train.agent_func_path` this file with `--advantage_estimator gigpo`.

The same episodes as `alfworld_gigpo.py`, on the corridor (`corridor_3spo.py`).
"""

from openrlhf_3spo.agents.textenv import GRPOTextEnvExecutor


class AgentExecutor(GRPOTextEnvExecutor):
    env_name = "corridor"
    advantage_estimator = "gigpo"
