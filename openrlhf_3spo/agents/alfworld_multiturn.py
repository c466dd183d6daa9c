"""ALFWorld in OpenRLHF's plain multi-turn mode: `--train.agent_func_path` this file.

The whole episode is one growing context and one trajectory-level reward (OpenRLHF's own
MultiTurnAgentExecutor, unchanged): the GRPO (`group_norm`) baseline on the same env and prompts as
3SPO. Dataset rows come from `openrlhf-3spo make-dataset alfworld`.
"""

import torch
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_3spo.agents.textenv import EpisodeState, env_pool, make_env, next_user_turn, user_turn


class ALFWorldInstance(AgentInstanceBase):
    def __init__(self, *args, **kwargs):
        self.env = self.episode = self.tokenizer = None

    async def reset(self, states, **kwargs):
        label = states["label"]
        self.tokenizer = label["tokenizer"]
        self.env = await env_pool().create(make_env, label["label"])
        observation = await self.env.reset()
        self.episode = EpisodeState("alfworld", await self.env.get("task"), observation)
        return {"observation": user_turn(self.tokenizer, self.episode.prompt())}

    async def step(self, states, **kwargs):
        action = self.episode.action_for(states["action_text"])
        observation = await self.env.step(action)
        self.episode.advance(action, observation)
        if observation.done:
            self.env.close()
            feedback = ""
        else:
            feedback = next_user_turn(self.tokenizer, self.episode.prompt())
        return {
            "rewards": torch.tensor(observation.reward),
            "scores": float(observation.won),
            "environment_feedback": feedback,
            "done": observation.done,
            "extra_logs": {"won": torch.tensor(float(observation.won)), "valid_action": torch.tensor(float(observation.valid))},
        }


class AgentExecutor(MultiTurnAgentExecutor):
    def __init__(self):
        super().__init__(ALFWorldInstance)

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        # The instance renders chat turns, so it needs the tokenizer: it travels with the label.
        output = await super().execute(
            prompt, {"label": label, "tokenizer": hf_tokenizer}, sampling_params, max_length, hf_tokenizer, llm_engine, images
        )
        output["label"] = label
        return output
