"""One episode in progress, as every mode steps it (3SPO's paths and branches, step-wise GRPO's
trajectories, the multi-turn mode's turns, every mode's eval episode), and `play`: an episode run
to its end, one sample per step."""

from dataclasses import dataclass, field

from openrlhf_3spo.envs.prompting import render_prompt
from openrlhf_3spo.rollout.step import chosen_action, context_limit, generate, output_logprobs, step_context


@dataclass
class Episode:
    """Its env, task and last observation, the (observation, action) history its prompts show, and
    the state keys it will record."""

    env: object
    task: str
    observation: object
    history: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    rank: tuple = ()  # a pending 3SPO branch's rank at its decision point (lower is better)

    @classmethod
    def start(cls, env, task, observation):
        return cls(env, task, observation, keys=[observation.state_key])

    def advance(self, action, observation, env=None, from_here=False, rank=()):
        """The episode one step on, as a new Episode (3SPO keeps the branches it leaves). `env`: the
        env the step ran in, if not this one's (a fork); `from_here`: it records only from this
        state on (a branch)."""
        history = self.history + [(self.observation.text, action or "(invalid action)")]
        keys = [self.observation.state_key] if from_here else self.keys
        return Episode(env or self.env, self.task, observation, history, keys + [observation.state_key], rank)

    def prompt(self, env_name, history_length):
        """The step's prompt text."""
        obs = self.observation
        return render_prompt(env_name, self.task, self.history, obs.text, obs.admissible_actions, history_length)

    def context(self, tokenizer, env_name, history_length, limit):
        """The step's prompt as token ids, history dropped until it fits in `limit`; None if it cannot."""
        return step_context(tokenizer, env_name, self.task, self.history, self.observation, history_length, limit)


async def play(episode, env_name, settings, sampling_params, max_length, tokenizer, engine):
    """Runs an episode to its end, one sample per step (the caller closes the env). -> (steps, the
    ended episode, cut short because a context could not fit?)"""
    steps, limit = [], context_limit(sampling_params, max_length)
    constrained = settings.decoding == "constrained"
    while not episode.observation.done:
        observation = episode.observation
        context = episode.context(tokenizer, env_name, settings.history_length, limit)
        if context is None:  # the context cannot fit: the episode ends here, as it is
            return steps, episode, True
        (output,) = await generate(engine, context, sampling_params, 1, max_length, observation if constrained else None)
        action = chosen_action(observation, output)
        following = await episode.env.step(action)
        steps.append(
            dict(
                context_ids=context, action_ids=list(output.token_ids), logprobs=output_logprobs(output),
                action=action, cut_off=output.finish_reason == "length", env_reward=float(following.reward),
                success=bool(following.won), invalid=not following.valid, novel=following.state_key != observation.state_key,
                state_key=observation.state_key, next_state_key=following.state_key, step=len(steps),
            )
        )
        episode = episode.advance(action, following)
    return steps, episode, False
