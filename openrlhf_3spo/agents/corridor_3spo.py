"""The corridor with the 3SPO executor: `--train.agent_func_path` this file with `--advantage_estimator 3spo`.

The small task set on which a tiny model learns through the real trainer on CPU
(`benchmarks/trainer_learning.py`); dataset rows from `envs.corridor.dataset_rows`.
"""

from openrlhf_3spo.agents.textenv import SPO3TextEnvExecutor


class AgentExecutor(SPO3TextEnvExecutor):
    env_name = "corridor"
