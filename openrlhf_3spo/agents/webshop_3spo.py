"""WebShop with the 3SPO executor: `--train.agent_func_path` this file with `--advantage_estimator 3spo`.

Adaptive, branching rollout on the same env and per-step prompts as `webshop_grpo.py` (the GRPO
baseline); settings in textenv.py.
"""

from openrlhf_3spo.agents.textenv import SPO3TextEnvExecutor


class AgentExecutor(SPO3TextEnvExecutor):
    env_name = "webshop"
