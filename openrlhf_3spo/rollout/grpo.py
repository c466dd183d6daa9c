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

from openrlhf.utils.agent import AgentExecutorBase

from openrlhf_3spo.rollout.episode import Episode, play
from openrlhf_3spo.rollout.request import StepSample, TaskRequest, TaskResult
from openrlhf_3spo.settings import Settings


class GRPOExecutor(AgentExecutorBase):
    """`make_env(label)` -> an async env (RemoteEnv, LocalEnv)."""

    advantage_estimator = "step_grpo"  # its step samples train with trajectory-level group_norm

    def __init__(self, make_env, env_name, settings=Settings()):
        self.make_env, self.env_name, self.settings = make_env, env_name, settings

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        """`label`: as for SPO3Executor (a `TaskRequest`'s, or a plain dataset label)."""
        request = TaskRequest.from_label(label)
        label, budget = request.label, request.trajectories
        env = await self.make_env(label)
        first = await env.reset()
        task = await env.get("task")
        envs = [env] + list(await asyncio.gather(*(env.fork() for _ in range(budget - 1))))
        group_id = uuid.uuid4().hex[:12]
        runs = await asyncio.gather(*(
            play(Episode.start(e, task, first), self.env_name, self.settings, sampling_params, max_length, hf_tokenizer, llm_engine)
            for e in envs
        ))
        for e in envs:
            e.close()
        samples, trajectories, truncated = [], [], 0
        for b, (steps, ended, cut) in enumerate(runs):
            total = sum(step["env_reward"] for step in steps)
            samples += [
                StepSample(**step, reward=total, group_id=group_id, trajectory_id=f"{group_id}/{b}", continued=True, n=1,
                           trained=True, novelty_weight=None, score=None, score_next=None)
                for step in steps
            ]
            trajectories.append({"keys": list(dict.fromkeys(ended.keys)), "won": bool(ended.observation.won), "return": total})
            truncated += cut
        # B independent episodes: every env step is a main one, no state is ever written off
        stats = {"main_steps": len(samples), "fork_steps": 0, "continuation_steps": 0, "backtrack_depths": []}
        return TaskResult(prompt, label, task, samples, trajectories, truncated, written_off=False, rollout_stats=stats).to_output()
