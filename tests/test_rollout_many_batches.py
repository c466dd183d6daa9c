"""The shipped SPO3Executor over many batches, as training runs it: each batch reads one snapshot
version, then its finished trajectories are recorded and the version advances (what the samples
generator and experience maker do). The policy never improves: uniform over the admissible actions
(plus some unparsable answers), so every effect comes from the executor's own rules."""

import asyncio
import re
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from vllm import SamplingParams

from conftest import param_id

from openrlhf_3spo.envs.base import Observation, state_digest
from openrlhf_3spo.envs.corridor import CorridorEnv
from openrlhf_3spo.envs.pool import LocalEnv
from openrlhf_3spo.rollout.executor import SPO3Executor
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings
from openrlhf_3spo.state.local import LocalStateScores

PAPER = {"write_off": "paper", "tried_pairs": "filter"}
BATCHES = 12


class ByteTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True, return_dict=False):
        return list(messages[-1]["content"].encode())

    def decode(self, ids):
        return bytes(ids).decode()


class UniformEngine:
    """Each of the n samples: an unparsable answer with probability `p_invalid`, else an admissible
    action drawn uniformly. Logs every request: (n, the actions it answered)."""

    def __init__(self, seed, p_invalid=0.0):
        self.rng, self.p_invalid, self.requests = np.random.default_rng(seed), p_invalid, []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        text = bytes(prompt_token_ids).decode()
        actions = re.findall(r"'([^']*)'", text.split("Admissible actions: [", 1)[1].split("]\n", 1)[0])
        answers = [
            "I am not sure." if self.rng.random() < self.p_invalid else f"<action>{self.rng.choice(actions)}</action>"
            for _ in range(sampling_params.n)
        ]
        self.requests.append((sampling_params.n, answers))
        outputs = [SimpleNamespace(text=a, token_ids=list(a.encode()), finish_reason="stop", logprobs=None) for a in answers]
        return SimpleNamespace(outputs=outputs)


def train_batches(secret="abcabcab", max_steps=6, budget=8, p_invalid=0.0, xi=10, seed=0, **rules):
    """BATCHES batches of one task. The corridor is longer than the episode: no trajectory can win,
    so every visit is fruitless. -> (per-batch executor outputs, per-batch dead-end sets, engine)"""

    async def make_env(label):
        return LocalEnv(CorridorEnv(secret, max_steps=max_steps))

    scores = LocalStateScores(xi=xi)
    executor = SPO3Executor(make_env, scores, "alfworld", Settings(**rules))
    engine = UniformEngine(seed, p_invalid)
    params = SamplingParams(temperature=1.0, max_tokens=32)
    outputs, dead = [], []
    for _ in range(BATCHES):
        version = scores.current_version()
        label = TaskRequest("corridor", trajectories=budget, version=version).to_label()
        out = asyncio.run(executor.execute("prompt", label, params, 4096, ByteTokenizer(), engine))
        keys = list({s["next_state_key"] for s in out["step_samples"]})
        dead.append({k for k, s in zip(keys, scores.lookup(keys, version)["score"]) if s == 0})
        scores.record([t["keys"] for t in out["trajectories"]], [t["won"] for t in out["trajectories"]])
        scores.advance()
        outputs.append(out)
    return outputs, dead, engine


def trained_steps(outputs):
    return [sum(s["trained"] for s in out["step_samples"]) for out in outputs]


def groups(out):
    by_group = defaultdict(list)
    for s in out["step_samples"]:
        by_group[s["group_id"]].append(s)
    return list(by_group.values())


def test_a_task_is_not_written_off_by_its_own_trunk():
    outputs, _, _ = train_batches()
    trained = trained_steps(outputs)
    assert all(t >= 8 for t in trained), trained  # the start state's group of G_max = 8, every batch
    assert all(out["written_off"] for out in outputs[-3:])  # the paper's rule would have dropped it
    # the paper's literal rule: every trajectory counts its whole trunk, so after two batches the
    # start state has N_fail >= xi with SR = 0, n = 0, and the task yields nothing, ever
    literal = trained_steps(train_batches(**PAPER)[0])
    assert literal[0] > 0 and literal[-5:] == [0] * 5, literal


def test_every_trained_group_holds_all_n_samples_the_engine_returned():
    outputs, _, engine = train_batches()
    answered = iter(engine.requests)
    for out in outputs:
        for group in groups(out):
            n, answers = next(answered)
            assert len(group) == n and all(s["n"] == n for s in group)
            assert all(s["trained"] for s in group) == (n >= 2)
            # the same actions, duplicates included, in the engine's order
            assert [s["action"] for s in group] == [re.sub(r"</?action>", "", a) for a in answers]
    assert next(answered, None) is None
    # the tried-pair filter of the paper's rule shrinks groups on revisits
    outputs, _, engine = train_batches(**PAPER)
    sizes = [len(g) for out in outputs for g in groups(out) if g[0]["trained"]]
    assert min(sizes) < max(n for n, _ in engine.requests)


def dead_end_walks(outputs, dead):
    """Decision points where the path went into a written-off state although a candidate led elsewhere."""
    walks = 0
    for out, dead_keys in zip(outputs, dead):
        for group in groups(out):
            went = {s["next_state_key"] for s in group if s["continued"]}
            others = {s["next_state_key"] for s in group} - dead_keys
            walks += bool(went & dead_keys and others)
    return walks


def test_a_dead_end_never_ranks_first():
    outputs, dead = train_batches(xi=3)[:2]
    assert sum(map(len, dead)) > 10  # written-off states do appear
    assert dead_end_walks(outputs, dead) == 0


class ForkEnv:
    """A start state with two ways out, "left" to L and "right" to R; nothing wins."""

    def __init__(self, at="start", steps=0):
        self.at, self.steps = at, steps
        self.task, self.task_id = "go somewhere", "fork"

    def _observe(self):
        actions = ["left", "right"] if self.at == "start" else ["wait"]
        return Observation(f"You are at {self.at}.", actions, state_digest("fork", self.at), done=self.steps >= 3)

    def reset(self):
        return self._observe()

    def step(self, action):
        self.at, self.steps = {"left": "L", "right": "R"}.get(action, self.at), self.steps + 1
        return self._observe()

    def fork(self):
        return ForkEnv(self.at, self.steps)


@pytest.mark.parametrize("rules, goes_to", [({}, "R"), (PAPER, "L")], ids=param_id)
def test_the_progress_term_takes_a_dead_end_as_a_dead_end(rules, goes_to):
    """L is written off (3 failures, xi = 3); R was on a winning path once, so S(R) = 5^-50 ~ 0. The
    paper's progress term takes S(L) = 0 as well: L ties with R and, listed first, ranks first. With
    the score without the write-off rule, S(L) = 1: L gains no progress and ranks last."""
    scores = LocalStateScores(xi=3)
    scores.record([[state_digest("fork", "L")]] * 3 + [[state_digest("fork", "R")]], [False] * 3 + [True])
    scores.advance()

    async def make_env(label):
        return LocalEnv(ForkEnv())

    class LeftRight:
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            answers = [f"<action>{'left' if i % 2 == 0 else 'right'}</action>" for i in range(sampling_params.n)]
            outputs = [SimpleNamespace(text=a, token_ids=list(a.encode()), finish_reason="stop", logprobs=None) for a in answers]
            return SimpleNamespace(outputs=outputs)

    executor = SPO3Executor(make_env, scores, "alfworld", Settings(**rules))
    label = TaskRequest("fork", version=scores.current_version()).to_label()
    out = asyncio.run(executor.execute("p", label, SamplingParams(max_tokens=8), 4096, ByteTokenizer(), LeftRight()))
    at_start = [s for s in out["step_samples"] if s["state_key"] == state_digest("fork", "start")]
    assert len(at_start) == (2 if rules else 8)  # the filter keeps one sample per action
    assert {s["next_state_key"] for s in at_start if s["continued"]} == {state_digest("fork", goes_to)}


@pytest.mark.parametrize("state_key", ["env", "task_obs", "obs"])
def test_an_invalid_action_earns_no_novelty(state_key):
    outputs, _, _ = train_batches(p_invalid=0.3, state_key=state_key)
    invalid = [s for out in outputs for s in out["step_samples"] if s["invalid"]]
    assert len(invalid) > 20
    assert all(not s["novel"] and s["next_state_key"] == s["state_key"] for s in invalid)
    assert all(s["reward"] == pytest.approx(-0.1) for s in invalid)  # no novelty, no progress: the penalty
