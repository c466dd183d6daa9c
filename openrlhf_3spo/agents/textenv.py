"""What every agent function shares (the files in this folder only pick an env): building an env from
a dataset label, the env worker pool, chat rendering of each step's prompt, and the three modes.

OpenRLHF builds `AgentExecutor()` without arguments, so the run's settings (`openrlhf_3spo.settings`:
history window, max steps, env workers, WebShop reward, the 3SPO rules) come in each task's label,
a `TaskRequest` the plugin's samples generator sends; a plain dataset label gets the defaults.
Data locations come from ALFWORLD_DATA and WEBSHOP_DATA, or the label's `"root": "shipped"`.
"""

import functools
import json

import torch
from openrlhf.utils.agent import AgentExecutorBase, AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_3spo.envs.base import root_of_label
from openrlhf_3spo.envs.pool import EnvPool
from openrlhf_3spo.envs.prompting import parse_action
from openrlhf_3spo.rollout.episode import Episode
from openrlhf_3spo.rollout.evaluation import eval_episode
from openrlhf_3spo.rollout.executor import SPO3Executor
from openrlhf_3spo.rollout.grpo import GRPOExecutor
from openrlhf_3spo.rollout.request import TaskRequest


def make_env(label, max_steps=0, webshop_reward="success"):
    """The TextEnv a dataset label names (max_steps 0: the env's own limit). Runs in an env worker."""
    try:
        info = json.loads(label) if isinstance(label, str) else label
    except json.JSONDecodeError:
        info = None
    env_name = info.get("env") if isinstance(info, dict) else None
    steps = {"max_steps": max_steps} if max_steps else {}
    if env_name == "alfworld":
        from openrlhf_3spo.envs.alfworld import ALFWorldEnv, game_file_of

        return ALFWorldEnv(game_file_of(info), **steps)
    if env_name == "webshop":
        from openrlhf_3spo.envs.webshop import WebShopEnv

        return WebShopEnv(int(info["goal"]), root_of_label(info), reward=webshop_reward, **steps)
    if env_name == "corridor":
        from openrlhf_3spo.envs.corridor import CorridorEnv

        return CorridorEnv(info["secret"], **steps)
    raise ValueError(f"dataset label names no known env ('env': 'alfworld', 'webshop' or 'corridor'): {str(label)[:200]!r}")


@functools.cache
def env_pool(workers):
    """One pool per process (per vLLM rollout actor), shared by all its concurrent episodes."""
    return EnvPool(workers)


def remote_env_maker(settings):
    """`make_env(label)` for the executors: the labelled task's env, in this process's worker pool."""

    async def make_remote_env(label):
        return await env_pool(settings.env_workers).create(
            make_env, label, max_steps=settings.max_steps, webshop_reward=settings.webshop_reward
        )

    return make_remote_env


async def eval_episode_with(settings, env_name, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine,
                            images=None):
    """Every step mode's eval episode, with the run's settings: one plain episode, nothing recorded.
    (The arguments of OpenRLHF's `AgentExecutorBase.execute`; there are no images.)"""
    make_env = remote_env_maker(settings)
    return await eval_episode(make_env, env_name, settings, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine)


def user_turn(tokenizer, content):
    """The first turn: the chat template's user message and the assistant prefix."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def next_user_turn(tokenizer, content):
    """Text that follows a finished assistant turn: the template's turn end and the next user message.

    The assistant's end-of-turn token is part of the generated action when it stopped there, so it is
    not repeated."""
    marker = "\x00ACTION\x00"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}, {"role": "user", "content": content}],
        tokenize=False,
        add_generation_prompt=True,
    )
    feedback = text.split(marker, 1)[1]
    eos = tokenizer.eos_token or ""
    return feedback[len(eos) :] if eos and feedback.startswith(eos) else feedback


# ---- the agent-function classes; the files in this folder pick an env -------------------------


class TextEnvInstance(AgentInstanceBase):
    """One episode in OpenRLHF's plain multi-turn mode: each turn's user message is the step prompt."""

    def __init__(self, *args, **kwargs):
        self.env = self.episode = self.tokenizer = None

    async def reset(self, states, **kwargs):
        label, settings = states["label"], states["label"]["settings"]
        self.tokenizer = label["tokenizer"]
        self.env = await remote_env_maker(settings)(label["label"])
        observation = await self.env.reset()
        self.env_name, self.history_length = label["env_name"], settings.history_length
        self.episode = Episode.start(self.env, await self.env.get("task"), observation)
        return {"observation": user_turn(self.tokenizer, self.episode.prompt(self.env_name, self.history_length))}

    async def step(self, states, **kwargs):
        # the admissible action the model chose, or "" (an invalid action) when there is none
        action = parse_action(states["action_text"], self.episode.observation.admissible_actions) or ""
        observation = await self.env.step(action)
        self.episode = self.episode.advance(action, observation)
        if observation.done:
            self.env.close()
            feedback = ""
        else:
            feedback = next_user_turn(self.tokenizer, self.episode.prompt(self.env_name, self.history_length))
        return {
            "rewards": torch.tensor(observation.reward),
            "scores": float(observation.won),
            "environment_feedback": feedback,
            "done": observation.done,
            "extra_logs": {"won": float(observation.won), "valid_action": float(observation.valid)},
        }


class MultiTurnTextEnvExecutor(MultiTurnAgentExecutor):
    """OpenRLHF's MultiTurnAgentExecutor, unchanged, over the env of `env_name`: one growing context."""

    env_name = None
    reads_settings = True  # the samples generator puts the run's settings in the label

    def __init__(self):
        super().__init__(TextEnvInstance)

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        # The instance renders chat turns, so it needs the tokenizer: it travels with the label.
        request = TaskRequest.from_label(label)
        wrapped = {"label": request.label, "settings": request.settings, "tokenizer": hf_tokenizer, "env_name": self.env_name}
        output = await super().execute(prompt, wrapped, sampling_params, max_length, hf_tokenizer, llm_engine, images)
        output["label"] = request.label
        return output


class StepModeTextEnvExecutor(AgentExecutorBase):
    """A step mode over the env of `env_name`, with the run's settings and envs in this process's
    worker pool. Each task's request is read once; an eval task plays one plain episode."""

    env_name = None
    reads_settings = True

    async def execute(self, prompt, label, *args, **kwargs):
        request = TaskRequest.from_label(label)
        if request.eval:
            return await eval_episode_with(request.settings, self.env_name, prompt, request, *args, **kwargs)
        return await self._executor(request.settings).execute(prompt, request, *args, **kwargs)


class SPO3TextEnvExecutor(StepModeTextEnvExecutor):
    """3SPO, with scores from the run's state-score actors."""

    advantage_estimator = SPO3Executor.advantage_estimator

    @functools.lru_cache(maxsize=4)
    def _executor(self, settings):
        from openrlhf_3spo.state.client import StateScores

        scores = StateScores.connect(settings.state_actor, settings.score_shards)
        return SPO3Executor(remote_env_maker(settings), scores, self.env_name, settings)


class GRPOTextEnvExecutor(StepModeTextEnvExecutor):
    """Step-wise GRPO: the baseline (and GiGPO's episodes)."""

    advantage_estimator = GRPOExecutor.advantage_estimator

    @functools.lru_cache(maxsize=4)
    def _executor(self, settings):
        return GRPOExecutor(remote_env_maker(settings), self.env_name, settings)
