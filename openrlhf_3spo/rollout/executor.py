"""The 3SPO agent executor (DESIGN.md, "Adaptive rollout"), inside OpenRLHF's vLLM rollout actors.

For one task, with a budget of B trajectories (OpenRLHF's --rollout.n_samples_per_prompt):
at each decision point s_t it reads S(s_t) and n = ceil(G_max S(s_t)) from the state-score snapshot;
n = 0 truncates the trajectory, n = 1 takes one action (logged, not trained), n >= 2 asks the
engine once for n samples of the same context, runs each candidate in its own fork of the env,
scores each with the step reward (eq. 2), and makes the candidates one group. The path goes on
along the best-ranked candidate; the others wait on a stack, and when a trajectory ends the
executor backtracks to the most recent decision point with candidates left. (state, action) pairs
tried before, in this batch or earlier, are skipped.
"""

import asyncio
import copy
import dataclasses
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
from openrlhf.utils.agent import AgentExecutorBase
from vllm.sampling_params import RequestOutputKind

from openrlhf_3spo.algo import novelty_weight, step_reward
from openrlhf_3spo.envs.base import state_digest
from openrlhf_3spo.envs.prompting import HISTORY_LENGTH, parse_action, render_prompt


@dataclass
class StepSample:
    """One step: the rendered context at s_t and one candidate action, with its step reward."""

    context_ids: list
    action_ids: list
    logprobs: list | None
    action: str  # what the env was sent ("" for an unparsable or cut-off output)
    cut_off: bool  # the generation reached max_tokens
    reward: float
    novel: bool
    success: bool
    invalid: bool
    novelty_weight: float
    score: float  # S(s_t)
    score_next: float  # S(s_t+1)
    group_id: str
    state_key: str
    n: int
    trained: bool  # False for n = 1 steps and groups left with one member


@dataclass
class Path:
    """A trajectory in progress: its env, last observation, history and visited keys."""

    env: object
    observation: object
    history: list = field(default_factory=list)  # (observation text, action) pairs
    keys: list = field(default_factory=list)

    def advance(self, env, action, observation):
        return Path(env, observation, self.history + [(self.observation.text, action or "(invalid action)")], self.keys + [observation.state_key])


class SPO3Executor(AgentExecutorBase):
    """`make_env(label)` -> an async env (RemoteEnv, LocalEnv); `scores`: StateScores or LocalStateScores."""

    STATE_KEYS = ("env", "task_obs", "obs")

    def __init__(
        self, make_env, scores, env_name, history_length=HISTORY_LENGTH, omega_k=0.1, invalid_penalty=0.1, state_key="env"
    ):
        if state_key not in self.STATE_KEYS:
            raise ValueError(f"state_key must be one of {self.STATE_KEYS}, got {state_key!r}")
        self.make_env, self.scores, self.env_name = make_env, scores, env_name
        self.history_length, self.omega_k, self.invalid_penalty = history_length, omega_k, invalid_penalty
        self.state_key = state_key

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        """`label`: the dataset label, or {"label": ..., "trajectories": B, "version": v} from the
        plugin's samples generator (B defaults to 1, v to the current snapshot)."""
        info = label if isinstance(label, dict) and "trajectories" in label else {"label": label}
        budget, version = int(info.get("trajectories", 1)), info.get("version")
        if budget < 1:
            raise ValueError(f"trajectory budget must be >= 1, got {budget}")
        env = await self.make_env(info["label"])
        observation = await env.reset()  # envs know their task text after reset
        task, task_id = await env.get("task"), await env.get("task_id")
        rollout = _TaskRollout(self, task, task_id, version, sampling_params, max_length, hf_tokenizer, llm_engine)
        first = rollout.keyed(observation)
        stack, finished = [], []
        path = Path(env, first, keys=[first.state_key])
        while True:
            ended = await rollout.follow(path, stack, budget - len(finished) - 1)
            finished.append(ended)
            if len(finished) >= budget or not stack:
                break
            path = stack.pop()
        for branch in stack:
            branch.env.close()
        return {
            "prompt": prompt,
            "label": info["label"],
            "step_samples": [asdict(s) for s in rollout.samples],
            "trajectories": [
                {"keys": list(dict.fromkeys(p.keys)), "won": bool(p.observation.won)} for p, cut in finished if not cut
            ],
            "truncated_trajectories": sum(cut for _, cut in finished),
            "task": task,
        }


class _TaskRollout:
    """The work of one execute() call: decision points, groups, and the step samples they yield."""

    def __init__(self, executor, task, task_id, version, sampling_params, max_length, tokenizer, engine):
        self.x, self.task, self.task_id, self.version = executor, task, task_id, version
        self.sampling_params, self.max_length, self.tokenizer, self.engine = sampling_params, max_length, tokenizer, engine
        self.uid, self.groups, self.samples = uuid.uuid4().hex[:12], 0, []

    async def follow(self, path, stack, branches_wanted):
        """Runs a path to its end; pushes the other ranked candidates of each decision point on
        `stack` (at most `branches_wanted` kept). -> (final path, truncated?)"""
        scores = self.x.scores
        while not path.observation.done:
            key = path.observation.state_key
            here = await scores.lookup_async([key], self.version)
            score, n, n_total = float(here["score"][0]), int(here["n"][0]), int(here["n_total"][0])
            context = self._context(path)
            if n == 0 or context is None:  # truncation: the state is written off, or the context cannot fit
                path.env.close()
                return path, True
            outputs = await self._generate(context, n)
            actions = [self._action(path.observation, o) for o in outputs]
            members = await self._members(key, actions) if n >= 2 else []
            if len(members) < 2:  # n = 1, or all but one candidate tried before: one step, not trained
                members, trained = members or [0], False
            else:
                trained = True
            envs = [path.env] + list(await asyncio.gather(*(path.env.fork() for _ in members[1:])))
            observations = [self.keyed(o) for o in await asyncio.gather(*(e.step(actions[i]) for e, i in zip(envs, members)))]
            after = await scores.lookup_async([o.state_key for o in observations], self.version)
            rewards, parts = self._rewards(path.observation, score, n_total, after["score"], observations)
            group_id = f"{self.uid}/{self.groups}"
            self.groups += 1
            for j, i in enumerate(members):
                self.samples.append(
                    StepSample(
                        context, list(outputs[i].token_ids), _logprobs(outputs[i]), actions[i],
                        outputs[i].finish_reason == "length", float(rewards[j]),
                        **{k: v[j] for k, v in parts.items()}, score=score, score_next=float(after["score"][j]),
                        group_id=group_id, state_key=key, n=n, trained=trained,
                    )
                )
            if trained:
                await scores.mark_tried_async([(key, actions[i]) for i in members if actions[i]])
            ranked = np.argsort(-rewards, kind="stable")
            best = ranked[0]
            for j in ranked[:0:-1]:  # worst first: the next-best ends on top of the stack
                stack.append(path.advance(envs[j], actions[members[j]], observations[j]))
            while len(stack) > max(branches_wanted, 0):
                stack.pop(0).env.close()
            path = path.advance(envs[best], actions[members[best]], observations[best])
        path.env.close()
        return path, False

    def keyed(self, observation):
        """The observation with the state key of --spo3.state_key: the env's own fingerprint, or a
        digest of the observation text with (task_obs) or without (obs) the task id."""
        if self.x.state_key == "env":
            return observation
        parts = (self.task_id, observation.text) if self.x.state_key == "task_obs" else (observation.text,)
        return dataclasses.replace(observation, state_key=state_digest(*parts))

    def _context(self, path):
        """Token ids of this step's prompt; history dropped from the left until it fits, None if even
        the task, current observation and admissible actions do not."""
        obs, limit = path.observation, self.max_length - self._max_new_tokens()
        for window in range(self.x.history_length, -1, -1):
            text = render_prompt(self.x.env_name, self.task, path.history, obs.text, obs.admissible_actions, window)
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
            )
            if len(ids) <= limit:
                return list(ids)
        return None

    def _max_new_tokens(self):
        return self.sampling_params.max_tokens or 1

    async def _generate(self, context, n):
        params = copy.deepcopy(self.sampling_params)
        params.n = n
        room = self.max_length - len(context)  # OpenRLHF's max_new_tokens may be None: the context left
        params.max_tokens = min(params.max_tokens or room, room)
        # streamed (the default), vLLM's last output of an n-sample request holds only the samples
        # that finished last; FINAL_ONLY makes it hold all n
        params.output_kind = RequestOutputKind.FINAL_ONLY
        outputs = (await self.engine.generate(context, params)).outputs
        if len(outputs) != n:
            raise RuntimeError(f"the engine returned {len(outputs)} samples for a request of n={n}")
        return outputs

    @staticmethod
    def _action(observation, output):
        """A cut-off generation (max_tokens reached) is an invalid action, whatever it says."""
        if output.finish_reason == "length":
            return ""
        return parse_action(output.text, observation.admissible_actions) or ""

    async def _members(self, key, actions):
        """Indices of the candidates that form the group: invalid outputs, and valid actions not tried
        before at this state (nor earlier in this group)."""
        tried = await self.x.scores.is_tried_async([(key, a) for a in actions])
        members, seen = [], set()
        for i, action in enumerate(actions):
            if not action:
                members.append(i)
            elif not tried[i] and action not in seen:
                members.append(i)
                seen.add(action)
        return members

    def _rewards(self, observation, score, n_total, scores_next, observations):
        novel = np.array([o.state_key != observation.state_key for o in observations])
        success = np.array([o.won for o in observations])
        invalid = np.array([not o.valid for o in observations])
        rewards = step_reward(
            score, scores_next, n_total, novel, success, self.x.omega_k, invalid, self.x.invalid_penalty
        )
        w = float(novelty_weight(n_total, self.x.omega_k))
        parts = {"novel": novel.tolist(), "success": success.tolist(), "invalid": invalid.tolist(), "novelty_weight": [w] * len(observations)}
        return np.asarray(rewards, dtype=float), parts


def _logprobs(output):
    if not output.logprobs:
        return None
    return [step[token].logprob for step, token in zip(output.logprobs, output.token_ids)]
