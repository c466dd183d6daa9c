"""The GRPO baseline on the same footing as 3SPO: verl-agent's GRPO for multi-turn agents, as in the
published ALFWorld and WebShop tables.

For one task, B independent trajectories (OpenRLHF's --rollout.n_samples_per_prompt) from the same
start state, each step with its own prompt (task, history window, current observation, admissible
actions) and one sample, under the same token caps as 3SPO. Every step is a training sample whose
reward is its trajectory's return; the trainer normalises the returns over the task's B
trajectories (group_norm) and gives each step its trajectory's advantage (`trajectory_advantages`).
GiGPO trains on the same episodes (`advantage_estimator = "gigpo"` in its agent files): each step
carries its env reward, the state it was taken from and its index, for the anchor-state groups.
"""

import asyncio
import uuid
from dataclasses import dataclass

from openrlhf.utils.agent import AgentExecutorBase

from openrlhf_3spo.settings import Settings
from openrlhf_3spo.rollout.step import chosen_action, context_limit, generate, output_logprobs, step_context, task_label


@dataclass
class TrajectoryStep:
    """One step of one trajectory: its context and action, and the trajectory's return."""

    context_ids: list
    action_ids: list
    logprobs: list | None
    action: str  # what the env was sent ("" for an unparsable or cut-off output)
    cut_off: bool
    reward: float  # the trajectory's return (sum of its env rewards)
    env_reward: float  # this step's env reward
    success: bool
    invalid: bool
    group_id: str  # the task: its B trajectories form one group
    trajectory_id: str
    state_key: str  # the state the step was taken from: GiGPO's anchor
    step: int  # its index in the trajectory
    n: int = 1
    trained: bool = True


class GRPOExecutor(AgentExecutorBase):
    """`make_env(label)` -> an async env (RemoteEnv, LocalEnv)."""

    advantage_estimator = "step_grpo"  # its step samples train with trajectory-level group_norm

    def __init__(self, make_env, env_name, settings=Settings()):
        self.make_env, self.env_name, self.settings = make_env, env_name, settings.checked()

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        """`label`: as for SPO3Executor ({"label": ..., "trajectories": B} or a dataset label)."""
        label, budget, _ = task_label(label)
        env = await self.make_env(label)
        first = await env.reset()
        task = await env.get("task")
        envs = [env] + list(await asyncio.gather(*(env.fork() for _ in range(budget - 1))))
        group_id = uuid.uuid4().hex[:12]
        runs = await asyncio.gather(
            *(self._trajectory(e, first, task, sampling_params, max_length, hf_tokenizer, llm_engine) for e in envs)
        )
        for e in envs:
            e.close()
        samples, trajectories, truncated = [], [], 0
        for b, (steps, last, keys, cut) in enumerate(runs):
            total = sum(step["env_reward"] for step in steps)
            samples += [
                dict(vars(TrajectoryStep(**step, reward=total, group_id=group_id, trajectory_id=f"{group_id}/{b}")))
                for step in steps
            ]
            trajectories.append({"keys": list(dict.fromkeys(keys)), "won": bool(last.won), "return": total})
            truncated += cut
        return {
            "prompt": prompt,
            "label": label,
            "step_samples": samples,
            "trajectories": trajectories,
            "truncated_trajectories": truncated,
            "task": task,
        }

    async def evaluate(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        """One plain episode (one sample per step, nothing recorded), as OpenRLHF's single-response
        output whose reward is task success (1 or 0): what the eval metrics of every step mode count.
        WebShop episodes also report the purchase score."""
        label = task_label(label)[0]
        env = await self.make_env(label)
        first = await env.reset()
        task = await env.get("task")
        steps, last, _, _ = await self._trajectory(env, first, task, sampling_params, max_length, hf_tokenizer, llm_engine)
        score = await env.get("score") if self.env_name == "webshop" else None
        env.close()
        context, action = (steps[-1]["context_ids"], steps[-1]["action_ids"]) if steps else ([], [])
        won = float(last.won)
        return {
            "prompt": prompt,
            "label": label,
            "observation_tokens": context + action,
            "action_ranges": [(len(context), len(context) + len(action))],
            "rollout_log_probs": None,
            "reward": won,
            "scores": won,
            "extra_logs": {"won": won, "steps": float(len(steps)), "score": float(score or 0.0)},
        }

    async def _trajectory(self, env, observation, task, sampling_params, max_length, tokenizer, engine):
        """One episode, one sample per step (the caller closes the env). -> (steps, last observation,
        keys, cut short?)"""
        steps, history, keys = [], [], [observation.state_key]
        limit = context_limit(sampling_params, max_length)
        cut = False
        while not observation.done:
            context = step_context(tokenizer, self.env_name, task, history, observation, self.settings.history_length, limit)
            if context is None:  # the context cannot fit: the episode ends here, as it is
                cut = True
                break
            (output,) = await generate(engine, context, sampling_params, 1, max_length, observation if self.settings.decoding == "constrained" else None)
            action = chosen_action(observation, output)
            following = await env.step(action)
            steps.append(
                dict(
                    context_ids=context, action_ids=list(output.token_ids), logprobs=output_logprobs(output),
                    action=action, cut_off=output.finish_reason == "length", env_reward=float(following.reward),
                    success=bool(following.won), invalid=not following.valid, state_key=observation.state_key,
                    step=len(steps),
                )
            )
            history.append((observation.text, action or "(invalid action)"))
            observation = following
            keys.append(observation.state_key)
        return steps, observation, keys, cut
