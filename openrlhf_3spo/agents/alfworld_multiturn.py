"""ALFWorld in OpenRLHF's plain multi-turn mode: `--train.agent_func_path` this file.

The whole episode is one growing context and one trajectory-level reward (OpenRLHF's own
MultiTurnAgentExecutor, unchanged): the GRPO (`group_norm`) baseline on the same env and prompts as
3SPO. Dataset rows come from `openrlhf-3spo make-dataset alfworld`; settings in textenv.py.
"""

from openrlhf_3spo.agents.textenv import MultiTurnTextEnvExecutor


class AgentExecutor(MultiTurnTextEnvExecutor):
    env_name = "alfworld"
