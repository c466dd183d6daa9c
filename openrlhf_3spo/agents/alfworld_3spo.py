"""ALFWorld with the 3SPO executor: `--train.agent_func_path` this file with `--advantage_estimator 3spo`.

Adaptive, branching rollout on the same env and prompts as `alfworld_multiturn.py` (the GRPO
baseline); settings in openrlhf_3spo/agents/textenv.py.
"""

import os

from openrlhf_3spo.agents.textenv import env_float, env_int, history_length, make_remote_env
from openrlhf_3spo.rollout.executor import SPO3Executor
from openrlhf_3spo.state.actor import StateScores


class AgentExecutor(SPO3Executor):
    def __init__(self):
        super().__init__(
            make_remote_env,
            None,  # connected on first use: the state-score actors start with the trainer
            "alfworld",
            history_length(),
            omega_k=env_float("SPO3_OMEGA_K", 0.1),
            invalid_penalty=env_float("SPO3_INVALID_PENALTY", 0.1),
            state_key=os.environ.get("SPO3_STATE_KEY", "env"),
        )

    async def execute(self, *args, **kwargs):
        if self.scores is None:
            self.scores = StateScores.connect(os.environ.get("SPO3_STATE_ACTOR", "spo3-state"), env_int("SPO3_SCORE_SHARDS", 1))
        return await super().execute(*args, **kwargs)
