"""ALFWorld, step-wise GRPO: `--train.agent_func_path` this file with `--advantage_estimator step_grpo`.

The baseline of the published tables: per-step prompts with the same history window and token caps as
`alfworld_3spo.py`, B trajectories per task, each step trained with its trajectory's group_norm
advantage; settings in textenv.py.
"""

from openrlhf_3spo.agents.textenv import GRPOTextEnvExecutor


class AgentExecutor(GRPOTextEnvExecutor):
    env_name = "alfworld"
