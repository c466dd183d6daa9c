"""What every agent function shares: building an env from a dataset label, the env worker pool,
and chat rendering of each step's prompt.

Settings come from environment variables, since OpenRLHF builds `AgentExecutor()` without arguments:
SPO3_ENV_WORKERS (env worker processes per rollout actor, default 4), SPO3_HISTORY_LENGTH (default 2),
SPO3_MAX_STEPS (default: the env's), ALFWORLD_DATA; for 3SPO also SPO3_STATE_ACTOR (the state-score
actors' name, default "spo3-state"), SPO3_SCORE_SHARDS (default 1), SPO3_OMEGA_K (default 0.1),
SPO3_INVALID_PENALTY (default 0.1).
"""

import functools
import json
import os

from openrlhf_3spo.envs.pool import EnvPool
from openrlhf_3spo.envs.prompting import HISTORY_LENGTH, parse_action, render_prompt


def env_float(name, default):
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"${name} must be a number, got {value!r}") from None


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"${name} must be a whole number, got {value!r}") from None


def make_env(label):
    """The TextEnv a dataset label names. Runs inside an env worker process."""
    info = json.loads(label) if isinstance(label, str) else label
    env_name = info.get("env") if isinstance(info, dict) else None
    max_steps = env_int("SPO3_MAX_STEPS", 0)
    if env_name == "alfworld":
        from openrlhf_3spo.envs.alfworld import ALFWorldEnv, game_file_of

        return ALFWorldEnv(game_file_of(info), **({"max_steps": max_steps} if max_steps else {}))
    raise ValueError(f"dataset label names no known env ('env': 'alfworld'): {str(label)[:200]!r}")


async def make_remote_env(label):
    """The labelled task's env, in this process's env worker pool."""
    return await env_pool().create(make_env, label)


@functools.cache
def env_pool():
    """One pool per process (per vLLM rollout actor), shared by all its concurrent episodes."""
    return EnvPool(env_int("SPO3_ENV_WORKERS", 4))


def history_length():
    return env_int("SPO3_HISTORY_LENGTH", HISTORY_LENGTH)


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
