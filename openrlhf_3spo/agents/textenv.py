"""What every agent function shares (the files in this folder only pick an env): building an env from a dataset label, the env worker pool,
and chat rendering of each step's prompt.

Settings come from environment variables, since OpenRLHF builds `AgentExecutor()` without arguments:
SPO3_ENV_WORKERS (env worker processes per rollout actor, default 4), SPO3_HISTORY_LENGTH (default 2),
SPO3_MAX_STEPS (default: the env's), ALFWORLD_DATA, WEBSHOP_DATA, SPO3_WEBSHOP_REWARD (success: 10 x
success, or score: the raw score); for 3SPO also SPO3_STATE_ACTOR (the state-score
actors' name, default "spo3-state"), SPO3_SCORE_SHARDS (default 1), SPO3_OMEGA_K (default 0.1),
SPO3_INVALID_PENALTY (default 0.1), SPO3_G_MAX (default 8), SPO3_STATE_KEY, SPO3_N_RULE,
SPO3_WRITE_OFF and SPO3_TRIED_PAIRS (the executor's rules; `openrlhf-3spo train` sets them all).
"""

import functools
import json
import os

import torch
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_3spo.envs.pool import EnvPool
from openrlhf_3spo.envs.prompting import HISTORY_LENGTH, parse_action, render_prompt
from openrlhf_3spo.rollout.executor import SPO3Executor
from openrlhf_3spo.rollout.grpo import GRPOExecutor


def env_number(name, default, kind=int):
    """A setting from the environment; a clear error names the variable when it is not a number."""
    value = os.environ.get(name, "")
    try:
        return kind(value) if value else default
    except ValueError:
        raise ValueError(f"${name} must be {'a whole number' if kind is int else 'a number'}, got {value!r}") from None


def make_env(label):
    """The TextEnv a dataset label names. Runs inside an env worker process."""
    try:
        info = json.loads(label) if isinstance(label, str) else label
    except json.JSONDecodeError:
        info = None
    env_name = info.get("env") if isinstance(info, dict) else None
    steps = env_number("SPO3_MAX_STEPS", 0)
    max_steps = {"max_steps": steps} if steps else {}
    if env_name == "alfworld":
        from openrlhf_3spo.envs.alfworld import ALFWorldEnv, game_file_of

        return ALFWorldEnv(game_file_of(info), **max_steps)
    if env_name == "webshop":
        from openrlhf_3spo.envs.webshop import WebShopEnv

        root = "shipped" if info.get("root") == "shipped" else None
        return WebShopEnv(int(info["goal"]), root, reward=os.environ.get("SPO3_WEBSHOP_REWARD", "success"), **max_steps)
    raise ValueError(f"dataset label names no known env ('env': 'alfworld' or 'webshop'): {str(label)[:200]!r}")


async def make_remote_env(label):
    """The labelled task's env, in this process's env worker pool."""
    return await env_pool().create(make_env, label)


@functools.cache
def env_pool():
    """One pool per process (per vLLM rollout actor), shared by all its concurrent episodes."""
    return EnvPool(env_number("SPO3_ENV_WORKERS", 4))


def history_length():
    return env_number("SPO3_HISTORY_LENGTH", HISTORY_LENGTH)


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


class EpisodeState:
    """The agent-side view of one episode: task, history, last observation; renders step prompts."""

    def __init__(self, env_name, task, observation):
        self.env_name, self.task, self.observation = env_name, task, observation
        self.history = []  # (observation text, action text) pairs

    def prompt(self):
        obs = self.observation
        return render_prompt(self.env_name, self.task, self.history, obs.text, obs.admissible_actions, history_length())

    def action_for(self, output_text):
        """The admissible action the model chose, or "" (an invalid action) when there is none."""
        return parse_action(output_text, self.observation.admissible_actions) or ""

    def advance(self, action, observation):
        self.history.append((self.observation.text, action or "(invalid action)"))
        self.observation = observation



# ---- the agent-function classes; the files in this folder pick an env -------------------------


class TextEnvInstance(AgentInstanceBase):
    """One episode in OpenRLHF's plain multi-turn mode: each turn's user message is the step prompt."""

    def __init__(self, *args, **kwargs):
        self.env = self.episode = self.tokenizer = None

    async def reset(self, states, **kwargs):
        label = states["label"]
        self.tokenizer = label["tokenizer"]
        self.env = await env_pool().create(make_env, label["label"])
        observation = await self.env.reset()
        self.episode = EpisodeState(label["env_name"], await self.env.get("task"), observation)
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
            "extra_logs": {"won": float(observation.won), "valid_action": float(observation.valid)},
        }


class MultiTurnTextEnvExecutor(MultiTurnAgentExecutor):
    """OpenRLHF's MultiTurnAgentExecutor, unchanged, over the env of `env_name`: the GRPO baseline."""

    env_name = None

    def __init__(self):
        super().__init__(TextEnvInstance)

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        # The instance renders chat turns, so it needs the tokenizer: it travels with the label.
        wrapped = {"label": label, "tokenizer": hf_tokenizer, "env_name": self.env_name}
        output = await super().execute(prompt, wrapped, sampling_params, max_length, hf_tokenizer, llm_engine, images)
        output["label"] = label
        return output


class SPO3TextEnvExecutor(SPO3Executor):
    """The 3SPO executor over the env of `env_name`, envs in this process's worker pool."""

    env_name = None

    def __init__(self):
        super().__init__(
            make_remote_env,
            None,  # connected on first use: the state-score actors start with the trainer
            self.env_name,
            history_length(),
            omega_k=env_number("SPO3_OMEGA_K", 0.1, float),
            invalid_penalty=env_number("SPO3_INVALID_PENALTY", 0.1, float),
            state_key=os.environ.get("SPO3_STATE_KEY", "env"),
            g_max=env_number("SPO3_G_MAX", 8),
            n_rule=os.environ.get("SPO3_N_RULE", "adaptive"),
            write_off=os.environ.get("SPO3_WRITE_OFF", "branch"),
            tried_pairs=os.environ.get("SPO3_TRIED_PAIRS", "steer"),
        )

    async def execute(self, *args, **kwargs):
        if self.scores is None:
            from openrlhf_3spo.state.actor import StateScores

            name = os.environ.get("SPO3_STATE_ACTOR", "spo3-state")
            self.scores = StateScores.connect(name, env_number("SPO3_SCORE_SHARDS", 1))
        return await super().execute(*args, **kwargs)


class GRPOTextEnvExecutor(GRPOExecutor):
    """Step-wise GRPO over the env of `env_name`, envs in this process's worker pool: the baseline."""

    env_name = None

    def __init__(self):
        super().__init__(make_remote_env, self.env_name, history_length())
