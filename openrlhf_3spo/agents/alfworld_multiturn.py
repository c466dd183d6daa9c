"""ALFWorld in OpenRLHF's plain multi-turn mode: `--train.agent_func_path` this file.

The whole episode is one growing context and one trajectory-level reward (OpenRLHF's own
MultiTurnAgentExecutor, unchanged). Its context runs out after a handful of turns (each turn appends a
whole step prompt), so it is not the GRPO baseline: that is `alfworld_grpo.py`. Dataset rows come from `openrlhf-3spo make-dataset alfworld`; settings in textenv.py.
"""

from openrlhf_3spo.agents.textenv import MultiTurnTextEnvExecutor


class AgentExecutor(MultiTurnTextEnvExecutor):
    env_name = "alfworld"
