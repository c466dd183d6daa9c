"""The 3SPO agent executor, inside OpenRLHF's vLLM rollout actors.

For one task, with a budget of B trajectories (OpenRLHF's --rollout.n_samples_per_prompt): at each
decision point s_t it reads S(s_t) from the state-score snapshot and draws n = ceil(G_max S(s_t))
candidates (eq. 3); n = 0 truncates the trajectory, n = 1 takes one action (not trained), n >= 2
asks the engine once for n samples of the same context, runs each distinct action in its own fork
of the env, scores it with the step reward (eq. 2), and makes the n samples one group. The path goes
on along the best-ranked candidate (or a sampled one, continue_along="sampled"); the others wait on
a stack, and when a trajectory ends the executor backtracks to a pending branch: the most recent (ranked
backtracking DFS, backtrack="recent"), the best-ranked over the whole stack, the shallowest, or a
sampled one; backtrack="none" runs B independent episodes from the start state instead, each with
its step groups. `rollout_stats` says where the env steps went.

Rules that decide how this behaves over many batches (each with the paper's literal rule behind a
setting, for ablations):
- write_off="branch": a task's start state is never truncated (its n comes from the score without
  the write-off rule), a backtracked continuation is recorded from its branch point on, and a
  written-off state enters the progress term, and the ranking, as the dead end it is.
  "paper": every trajectory records all its states, any state can be written off, and a written-off
  state counts as S = 0 in the progress term.
- tried_pairs="steer": (state, action) pairs tried before rank after untried ones and invalid
  candidates are not expanded; the trained group holds all n samples, duplicates included.
  "filter": tried pairs and repeats are dropped from the group.
- n_rule="adaptive" (eq. 3) or "fixed" (n = G_max everywhere, nothing truncated).
An invalid action keeps the state key under every key mode, so it never earns novelty.
"""

import asyncio
import dataclasses
import random
import uuid
from dataclasses import dataclass, field

import numpy as np
from openrlhf.utils.agent import AgentExecutorBase

from openrlhf_3spo.algo import adaptive_n, novelty_weight, step_reward
from openrlhf_3spo.envs.base import state_digest
from openrlhf_3spo.rollout.episode import Episode
from openrlhf_3spo.rollout.request import StepSample, TaskRequest, TaskResult
from openrlhf_3spo.rollout.step import chosen_action, context_limit, generate, output_logprobs
from openrlhf_3spo.settings import Settings


@dataclass
class DecisionPoint:
    """One state's group: its n samples, the distinct actions they name (`choices`), each run in
    its own env, and (once scored) each choice's step reward."""

    observation: object  # s_t
    step: int  # its index along the path
    context: list
    n: int
    outputs: list
    actions: list  # per sample: the admissible action it names, or ""
    tried: list  # per sample: was (s_t, action) tried before
    members: list  # the samples that form the group
    trained: bool
    choices: list  # per distinct action of the members
    envs: list
    observations: list  # s_t+1 per choice
    score: float = 0.0
    scores_next: object = None
    rewards: object = None
    parts: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)


class SPO3Executor(AgentExecutorBase):
    """`make_env(label)` -> an async env (RemoteEnv, LocalEnv); `scores`: a `state.StateScoreClient`;
    `settings`: the run's (the rules are described in the module docstring)."""

    advantage_estimator = "3spo"  # its step samples train with step-group advantages

    def __init__(self, make_env, scores, env_name, settings=Settings(), seed=None):
        self.make_env, self.scores, self.env_name = make_env, scores, env_name
        self.settings = settings
        self.rng = random.Random(seed)  # the sampled rules' draws

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        """`label`: a `TaskRequest`'s (B trajectories, at snapshot version v), or a plain dataset label
        (B = 1, the current snapshot)."""
        request = TaskRequest.from_label(label)
        label, budget, version = request.label, request.trajectories, request.version
        env = await self.make_env(label)
        observation = await env.reset()  # envs know their task text after reset
        task, task_id = await env.get("task"), await env.get("task_id")
        rollout = _TaskRollout(self, task, task_id, version, sampling_params, max_length, hf_tokenizer, llm_engine)
        first = rollout.keyed(observation)
        rollout.start_key = first.state_key
        start = await self.scores.lookup_async([first.state_key], version)
        stack, finished = [], []
        independent = self.settings.backtrack == "none"
        start_env = await env.fork() if independent and budget > 1 else None  # each episode forks it
        path = Episode.start(env, task, first)
        while True:
            rollout.path_index = len(finished)
            ended = await rollout.follow(path, stack, 0 if independent else budget - len(finished) - 1)
            finished.append(ended)
            if len(finished) >= budget or not (stack or independent):
                break
            if independent:
                path = Episode.start(await start_env.fork(), task, first)
            else:
                path = stack.pop(self._pick(stack))
                rollout.stats["backtrack_depths"].append(len(path.history) - 1)  # depth of its decision point
        for branch in stack:
            branch.env.close()
        if start_env is not None:
            start_env.close()
        return TaskResult(
            prompt, label, task, rollout.samples,
            trajectories=[{"keys": list(dict.fromkeys(p.keys)), "won": bool(p.observation.won)} for p, cut in finished if not cut],
            truncated_trajectories=sum(cut for _, cut in finished),
            written_off=bool(start["score"][0] == 0),
            rollout_stats=rollout.stats,
        ).to_output()

    def _pick(self, stack):
        """The index of the pending branch to backtrack to (--spo3.backtrack)."""
        if self.settings.backtrack == "recent":
            return len(stack) - 1
        if self.settings.backtrack == "sampled":
            return self.rng.randrange(len(stack))
        if self.settings.backtrack == "best":  # the lowest rank; of equals, the most recent
            return min(range(len(stack)), key=lambda i: (stack[i].rank, -i))
        return min(range(len(stack)), key=lambda i: (len(stack[i].history), -i))  # shallowest

    def _drop(self, stack):
        """The index of the pending branch the rule would take last: dropped when the stack holds more
        branches than trajectories are left."""
        if self.settings.backtrack == "recent":
            return 0
        if self.settings.backtrack == "sampled":
            return self.rng.randrange(len(stack))
        if self.settings.backtrack == "best":
            return max(range(len(stack)), key=lambda i: (stack[i].rank, -i))
        return max(range(len(stack)), key=lambda i: (len(stack[i].history), -i))


class _TaskRollout:
    """The work of one execute() call: decision points, groups, and the step samples they yield."""

    def __init__(self, executor, task, task_id, version, sampling_params, max_length, tokenizer, engine):
        self.x, self.task, self.task_id, self.version = executor, task, task_id, version
        self.settings = executor.settings
        self.sampling_params, self.max_length, self.tokenizer, self.engine = sampling_params, max_length, tokenizer, engine
        self.uid, self.groups, self.samples = uuid.uuid4().hex[:12], 0, []
        self.start_key, self.path_index = None, 0  # path_index: trajectories finished before this one
        # env steps: along the first trajectory, in candidates' forks (their first step), along
        # backtracked continuations or later episodes; and each backtrack's decision-point depth
        self.stats = {"main_steps": 0, "fork_steps": 0, "continuation_steps": 0, "backtrack_depths": []}

    async def follow(self, path, stack, branches_wanted):
        """Runs a path to its end; pushes the other ranked candidates of each decision point on
        `stack` (at most `branches_wanted` kept). -> (final path, truncated?)"""
        while not path.observation.done:
            key = path.observation.state_key
            here = await self.x.scores.lookup_async([key], self.version)
            n = self._n(key, here, 0)  # eq. 3
            limit = context_limit(self.sampling_params, self.max_length)
            context = path.context(self.tokenizer, self.x.env_name, self.settings.history_length, limit)
            if n == 0 or context is None:  # truncation: the state is written off, or the context cannot fit
                path.env.close()
                return path, True
            point = await self._expand(path, context, n)
            await self._score(point, here)  # eq. 2
            best = self._branch(path, point, stack, branches_wanted)
            self._record(point, best)
            path = path.advance(point.choices[best], point.observations[best], env=point.envs[best])
        path.env.close()
        return path, False

    async def _expand(self, path, context, n):
        """n samples at the path's state; each distinct action the group names runs once, in its own
        fork of the env (the env is deterministic)."""
        observation, scores = path.observation, self.x.scores
        outputs = await generate(
            self.engine, context, self.sampling_params, n, self.max_length,
            observation if self.settings.decoding == "constrained" else None,
        )
        actions = [chosen_action(observation, o) for o in outputs]
        # one candidate ranks alone: no actor round trip for it
        tried = await scores.is_tried_async([(observation.state_key, a) for a in actions]) if n >= 2 else [False]
        members, trained = self._members(actions, tried, n)
        choices = list(dict.fromkeys(actions[i] for i in members))
        envs = [path.env] + list(await asyncio.gather(*(path.env.fork() for _ in choices[1:])))
        stepped = await asyncio.gather(*(e.step(a) for e, a in zip(envs, choices)))
        return DecisionPoint(
            observation, len(path.history), context, n, outputs, actions, tried, members, trained, choices, envs,
            observations=[self.keyed(o, observation) for o in stepped],
        )

    async def _score(self, point, here):
        """Each candidate's step reward (eq. 2), from S(s_t) and S(s_t+1) at this version; the
        group's pairs are marked tried."""
        scores = self.x.scores
        after = await scores.lookup_async([o.state_key for o in point.observations], self.version)
        progress = "raw_score" if self.settings.write_off == "branch" else "score"  # a dead end is no solved state
        point.score, point.scores_next = float(here[progress][0]), after[progress]
        point.rewards, point.parts = self._rewards(
            point.observation, point.score, int(here["n_total"][0]), point.scores_next, point.observations
        )
        if point.trained:
            await scores.mark_tried_async([(point.observation.state_key, a) for a in point.choices if a])
        point.dead = [self._n(o.state_key, after, j) == 0 for j, o in enumerate(point.observations)]

    def _branch(self, path, point, stack, branches_wanted):
        """Ranks the candidates, picks the one the path continues along, and pushes the others on
        the stack as pending branches (at most `branches_wanted` kept). -> the continued index."""
        rules = self.settings
        was_tried = [point.tried[point.actions.index(a)] for a in point.choices]
        ranked = self._rank(point.rewards, was_tried, point.dead)
        # the path goes on along the best-ranked candidate, or along the action of a sampled member
        if rules.continue_along == "best":
            best = ranked[0]
        else:
            best = point.choices.index(point.actions[self.x.rng.choice(point.members)])
        self.stats["continuation_steps" if self.path_index else "main_steps"] += 1
        self.stats["fork_steps"] += len(point.choices) - 1
        for j in reversed([j for j in ranked if j != best]):  # worst first: the next-best ends on top of the stack
            if (rules.write_off == "branch" and point.dead[j]) or (rules.tried_pairs == "steer" and not point.choices[j]):
                point.envs[j].close()  # it would end at once, or repeat this state
            else:
                rank = (rules.tried_pairs == "steer" and was_tried[j], -float(point.rewards[j]))
                branch = path.advance(
                    point.choices[j], point.observations[j], env=point.envs[j], from_here=rules.write_off == "branch", rank=rank
                )
                stack.append(branch)
        while len(stack) > max(branches_wanted, 0):
            stack.pop(self.x._drop(stack)).env.close()
        return best

    def _record(self, point, best):
        """The group's step samples: one per member, with its candidate's reward."""
        group_id = f"{self.uid}/{self.groups}"
        self.groups += 1
        for i in point.members:
            j = point.choices.index(point.actions[i])
            output = point.outputs[i]
            following = point.observations[j]
            self.samples.append(
                StepSample(
                    point.context, list(output.token_ids), output_logprobs(output), point.actions[i],
                    output.finish_reason == "length", float(point.rewards[j]), env_reward=float(following.reward),
                    **{k: v[j] for k, v in point.parts.items()}, group_id=group_id,
                    state_key=point.observation.state_key, next_state_key=following.state_key, step=point.step,
                    continued=j == best, n=point.n, trained=point.trained, trajectory_id=None,
                    score=point.score, score_next=float(point.scores_next[j]),
                )
            )

    def _n(self, key, looked_up, i):
        """n at a state (eq. 3) from a lookup's row i."""
        if self.settings.n_rule == "fixed":
            return self.settings.g_max
        # a task's start state is never written off: its n comes from the score without the rule
        at_start = self.settings.write_off == "branch" and key == self.start_key
        score = looked_up["raw_score" if at_start else "score"][i]
        return int(adaptive_n(score, self.settings.g_max))

    def _members(self, actions, tried, n):
        """-> (indices of the samples that form the group, trained?)."""
        if n < 2:
            return [0], False
        if self.settings.tried_pairs == "steer":
            return list(range(n)), True
        # "filter": invalid outputs, and valid actions not tried before here (nor earlier in this group)
        members, seen = [], set()
        for i, action in enumerate(actions):
            if not action or (not tried[i] and action not in seen):
                members.append(i)
                seen.add(action)
        return (members, True) if len(members) >= 2 else (members[:1] or [0], False)

    def _rank(self, rewards, was_tried, dead):
        """Candidate indices, best first: by step reward, after (under the default rules) the
        candidates that lead to a dead end or repeat a pair tried before."""
        rules = self.settings
        return sorted(
            range(len(rewards)),
            key=lambda j: (rules.write_off == "branch" and dead[j], rules.tried_pairs == "steer" and was_tried[j], -rewards[j]),
        )

    def keyed(self, observation, previous=None):
        """The observation with the state key of --spo3.state_key: the env's own fingerprint, or a
        digest of the observation text with (task_obs) or without (obs) the task id. An invalid
        action keeps the previous key: the state did not change."""
        if previous is not None and not observation.valid:
            return dataclasses.replace(observation, state_key=previous.state_key)
        if self.settings.state_key == "env":
            return observation
        parts = (self.task_id, observation.text) if self.settings.state_key == "task_obs" else (observation.text,)
        return dataclasses.replace(observation, state_key=state_digest(*parts))

    def _rewards(self, observation, score, n_total, scores_next, observations):
        novel = np.array([o.state_key != observation.state_key for o in observations])
        success = np.array([o.won for o in observations])
        invalid = np.array([not o.valid for o in observations])
        rewards = step_reward(
            score, scores_next, n_total, novel, success, self.settings.omega_k, invalid, self.settings.invalid_penalty
        )
        w = float(novelty_weight(n_total, self.settings.omega_k))
        parts = {"novel": novel.tolist(), "success": success.tolist(), "invalid": invalid.tolist(), "novelty_weight": [w] * len(observations)}
        return np.asarray(rewards, dtype=float), parts
