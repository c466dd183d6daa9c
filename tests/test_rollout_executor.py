"""The 3SPO executor on the corridor env with a scripted engine: n rules, groups, ranking,
backtracking, tried pairs, budget and truncation, against traces worked out by hand."""

import asyncio
import re
from types import SimpleNamespace

import pytest
from vllm import SamplingParams

from openrlhf_3spo.algo import adaptive_n
from openrlhf_3spo.envs.base import state_digest
from openrlhf_3spo.envs.corridor import CorridorEnv
from openrlhf_3spo.envs.pool import LocalEnv
from openrlhf_3spo.rollout.executor import SPO3Executor
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings
from openrlhf_3spo.state.local import LocalStateScores


def key(cell, task="corridor"):
    return state_digest(task, str(cell))


class ScriptedEngine:
    """Answers each request from `script[cell]`: a list of outputs (text, or (text, finish_reason))."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.calls, self.max_tokens = tokenizer, script, [], []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        text = self.tokenizer.decode(prompt_token_ids)
        cell = int(re.findall(r"cell (\d+)", text.split("Current observation:")[1])[0])
        self.calls.append((cell, sampling_params.n, text))
        self.max_tokens.append(sampling_params.max_tokens)
        outputs = []
        for answer in self.script[cell][: sampling_params.n]:
            answer, finish = answer if isinstance(answer, tuple) else (answer, "stop")
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            logprobs = [{t: SimpleNamespace(logprob=-0.25)} for t in ids] if sampling_params.logprobs is not None else None
            outputs.append(SimpleNamespace(token_ids=ids, text=answer, finish_reason=finish, logprobs=logprobs))
        return SimpleNamespace(outputs=outputs)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


def act(action):
    return f"<think>...</think><action>{action}</action>"


PAPER = {"write_off": "paper", "tried_pairs": "filter"}  # the paper's literal rules


def run(tokenizer, script, scores, budget=1, secret="ab", max_length=4096, max_tokens=32, logprobs=None, g_max=2, **rules):
    async def make_env(label):
        return LocalEnv(CorridorEnv(secret))

    executor = SPO3Executor(make_env, scores, "alfworld", Settings(g_max=g_max, **rules))
    engine = ScriptedEngine(tokenizer, script)
    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, logprobs=logprobs)
    label = TaskRequest("corridor", trajectories=budget).to_label()
    out = asyncio.run(executor.execute("prompt", label, params, max_length, tokenizer, engine))
    return out, engine


def test_hand_worked_trace_with_groups_ranking_backtracking_and_tried_pairs(tokenizer):
    """Corridor "ab", all states unseen: S = 1, n = ceil(2 * 1) = 2, w = 0.5 everywhere.
    cell 0: "press b" stays (R = 0), "press a" moves on (R = 0.5 novelty)          -> group 0
    cell 1: "press b" wins (R = 0.5 + 0.5 success), "press c" stays (R = 0)        -> group 1
    trajectory 1 wins; budget 2 keeps one branch: the most recent, cell 1 after "press c".
    cell 1 again: both pairs tried before. Default rules: the group keeps both samples (trained),
    the tried pairs only order the candidates (both tried: by reward), and the continuation is
    recorded from its branch point (cell 1) on."""
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press b"), act("press a")], 1: [act("press b"), act("press c")]}
    out, engine = run(tokenizer, script, scores, budget=2)
    assert [(c, n) for c, n, _ in engine.calls] == [(0, 2), (1, 2), (1, 2)]
    assert [(s["action"], s["reward"], s["trained"]) for s in out["step_samples"]] == [
        ("press b", 0.0, True),
        ("press a", 0.5, True),
        ("press b", 1.0, True),
        ("press c", 0.0, True),
        ("press b", 1.0, True),
        ("press c", 0.0, True),
    ]
    assert out["trajectories"] == [
        {"keys": [key(0), key(1), key(2)], "won": True},
        {"keys": [key(1), key(2)], "won": True},  # from the branch point on
    ]


def test_hand_worked_trace_under_the_papers_literal_rules(tokenizer):
    """As above with write_off="paper", tried_pairs="filter": at cell 1 again both pairs were tried,
    so no group forms; the first candidate is taken, untrained, and wins; the continuation records
    the whole trajectory."""
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press b"), act("press a")], 1: [act("press b"), act("press c")]}
    out, engine = run(tokenizer, script, scores, budget=2, logprobs=0, **PAPER)
    assert [(c, n) for c, n, _ in engine.calls] == [(0, 2), (1, 2), (1, 2)]
    samples = out["step_samples"]
    assert [(s["action"], s["reward"], s["trained"]) for s in samples] == [
        ("press b", 0.0, True),
        ("press a", 0.5, True),
        ("press b", 1.0, True),
        ("press c", 0.0, True),
        ("press b", 1.0, False),
    ]
    groups = [s["group_id"] for s in samples]
    assert groups[0] == groups[1] != groups[2] == groups[3] != groups[4]
    assert [s["state_key"] for s in samples] == [key(0), key(0), key(1), key(1), key(1)]
    assert [(s["novel"], s["success"], s["invalid"]) for s in samples[:4]] == [
        (False, False, False), (True, False, False), (True, True, False), (False, False, False)]
    assert all(s["score"] == 1.0 and s["n"] == 2 and s["novelty_weight"] == 0.5 for s in samples)
    assert out["trajectories"] == [
        {"keys": [key(0), key(1), key(2)], "won": True},
        {"keys": [key(0), key(1), key(2)], "won": True},  # distinct keys: cell 1 was visited twice
    ]
    assert out["truncated_trajectories"] == 0
    # token ids: the context decodes to the prompt the engine saw, the action ids to the answer
    first = samples[1]
    assert tokenizer.decode(first["context_ids"]) == engine.calls[0][2]
    assert tokenizer.decode(first["action_ids"]) == act("press a")
    assert first["logprobs"] == [-0.25] * len(first["action_ids"])
    assert "Current observation: You are in cell 0 of 2." in engine.calls[0][2]
    # backtracking resumed from the branch's own history
    assert "[Action 2: press c]" in engine.calls[2][2]


def test_budget_one_leaves_no_branch_and_records_scores_after_advance(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press a"), act("press c")], 1: [act("press b"), act("press a")]}
    out, engine = run(tokenizer, script, scores, budget=1)
    assert len(engine.calls) == 2 and len(out["trajectories"]) == 1
    scores.record([t["keys"] for t in out["trajectories"]], [t["won"] for t in out["trajectories"]])
    scores.advance()
    # t = 2, alpha = 1: the won states score 2^-(1/1.000001) = 0.50000035 -> n = ceil(1.0000007) = 2
    looked = scores.lookup([key(0), key(1), key(2)])
    assert looked["score"].tolist() == pytest.approx([2 ** -(1 / 1.000001)] * 3, rel=1e-12)
    assert adaptive_n(looked["score"], 2).tolist() == [2, 2, 2] and looked["n_total"].tolist() == [1, 1, 1]


def test_n_is_one_in_solved_states_and_zero_in_written_off_ones(tokenizer):
    scores = LocalStateScores(alpha=50.0, xi=2)
    scores.record([[key(0), key(1), key(2)]] * 3, [True] * 3)  # t = 4: S = 4^-50 -> n = 1 at cells 0 and 1
    scores.advance()
    script = {0: [act("press a")], 1: [act("press b")]}
    out, engine = run(tokenizer, script, scores, budget=1, g_max=8)
    assert [(c, n) for c, n, _ in engine.calls] == [(0, 1), (1, 1)]
    assert [s["trained"] for s in out["step_samples"]] == [False, False]
    assert out["trajectories"] == [{"keys": [key(0), key(1), key(2)], "won": True}]

    dead = LocalStateScores(xi=2)
    dead.record([[key(0), key(1)]] * 2, [False, False])  # N_fail = 2 >= xi, SR = 0: S = 0, n = 0
    dead.advance()
    out, engine = run(tokenizer, script, dead, budget=3, **PAPER, g_max=8)
    assert engine.calls == [] and out["trajectories"] == [] and out["truncated_trajectories"] == 1
    assert out["written_off"]
    # default rules: the start state is never truncated (n from the score without the write-off
    # rule: SR = 0 -> 1, n = 8), but the written-off inner state (cell 1) is
    script = {0: [act("press a")] * 8}
    out, engine = run(tokenizer, script, dead, budget=3, g_max=8)
    assert [(c, n) for c, n, _ in engine.calls] == [(0, 8)]
    assert out["written_off"] and out["truncated_trajectories"] == 1 and out["trajectories"] == []
    assert [s["trained"] for s in out["step_samples"]] == [True] * 8


DUPLICATES = {
    0: [act("press a"), act("press a"), (act("press c"), "length"), "no tag at all"],
    1: [act("press b")] * 4,
}


def test_groups_keep_every_sample_and_cut_off_outputs_are_invalid(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    out, engine = run(tokenizer, DUPLICATES, scores, budget=1, g_max=4)
    at_0 = [s for s in out["step_samples"] if s["state_key"] == key(0)]
    # all four samples, duplicates included (on-policy, as GRPO); cut-off and untagged outputs are invalid
    assert [(s["action"], s["invalid"], s["novel"]) for s in at_0] == [
        ("press a", False, True), ("press a", False, True), ("", True, False), ("", True, False)]
    assert [s["reward"] for s in at_0] == pytest.approx([0.5, 0.5, -0.1, -0.1])
    at_1 = [s for s in out["step_samples"] if s["state_key"] == key(1)]
    assert len(at_1) == 4 and all(s["trained"] and s["reward"] == 1.0 for s in at_1)


def test_duplicates_in_a_group_are_skipped_under_the_papers_rule(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    out, engine = run(tokenizer, DUPLICATES, scores, budget=1, **PAPER, g_max=4)
    at_0 = [s for s in out["step_samples"] if s["state_key"] == key(0)]
    # the second "press a" repeats a pair tried in this group; the cut-off and untagged outputs are invalid
    assert [(s["action"], s["invalid"]) for s in at_0] == [("press a", False), ("", True), ("", True)]
    assert [s["reward"] for s in at_0] == pytest.approx([0.5, -0.1, -0.1])
    at_1 = [s for s in out["step_samples"] if s["state_key"] == key(1)]
    assert len(at_1) == 1 and not at_1[0]["trained"]  # four copies of one action: a group of one


def test_long_history_is_cut_from_the_left_and_an_unfittable_context_truncates(tokenizer):
    from openrlhf_3spo.envs.prompting import render_prompt

    script = {0: [act("press c"), act("press a")], 1: [act("press b"), act("press b")]}
    # at cell 1 (step 2) the history holds step 1; size the context to fit that prompt only without it
    env = CorridorEnv("ab")
    start = env.reset()
    moved = env.step("press a")

    def length(history_length):
        text = render_prompt("alfworld", env.task, [(start.text, "press a")], moved.text, moved.admissible_actions, history_length)
        messages = [{"role": "user", "content": text}]
        return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))

    assert length(0) < length(2)
    out, engine = run(tokenizer, script, LocalStateScores(alpha=1.0), budget=1, max_length=length(0) + 32)
    at_1 = [s for s in out["step_samples"] if s["state_key"] == key(1)]
    text = tokenizer.decode(at_1[0]["context_ids"])
    assert len(at_1[0]["context_ids"]) == length(0)
    assert "[Observation" not in text and f"Current observation: {moved.text}" in text and "'press b'" in text
    assert out["trajectories"][0]["won"]
    # no room even for the task, the observation and the actions: the trajectory is truncated
    out, engine = run(tokenizer, script, LocalStateScores(), budget=2, max_length=40, g_max=8)
    assert engine.calls == [] and out["truncated_trajectories"] == 1 and out["trajectories"] == []


def test_concurrent_tasks_share_an_engine_without_mixing(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press b"), act("press a")], 1: [act("press b"), act("press c")], 2: [act("press a")] * 2}

    async def make_env(label):
        return LocalEnv(CorridorEnv(label, task_id=f"corridor-{label}"))

    executor = SPO3Executor(make_env, scores, "alfworld", Settings(g_max=2))
    engine = ScriptedEngine(tokenizer, script)
    params = SamplingParams(max_tokens=32)

    async def main():
        return await asyncio.gather(
            *(executor.execute("p", s, params, 4096, tokenizer, engine) for s in ("ab", "aba"))
        )

    short, long = asyncio.run(main())
    assert short["trajectories"] == [{"keys": [key(c, "corridor-ab") for c in range(3)], "won": True}]
    assert long["trajectories"] == [{"keys": [key(c, "corridor-aba") for c in range(4)], "won": True}]
    groups_short = {s["group_id"] for s in short["step_samples"]}
    groups_long = {s["group_id"] for s in long["step_samples"]}
    assert len(groups_short) == 2 and len(groups_long) == 3 and not groups_short & groups_long


def test_max_tokens_none_means_the_context_left(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press a")] * 2, 1: [act("press b")] * 2}
    out, engine = run(tokenizer, script, scores, budget=1, max_length=1000, max_tokens=None)
    contexts = [s["context_ids"] for s in out["step_samples"][::2]]  # one group of two per state
    assert engine.max_tokens == [1000 - len(contexts[0]), 1000 - len(contexts[1])]
    out, engine = run(tokenizer, script, scores, budget=1, max_length=1000, max_tokens=20)
    assert engine.max_tokens == [20, 20]


@pytest.mark.parametrize("rule", ["state_key", "n_rule", "write_off", "tried_pairs"])
def test_unknown_rules_are_refused(rule):
    with pytest.raises(ValueError, match=rule):
        SPO3Executor(None, None, "alfworld", Settings(**{rule: "pixels"}))


def test_task_obs_keys_follow_the_text(tokenizer):
    scores = LocalStateScores(alpha=1.0)
    script = {0: [act("press b"), act("press a")], 1: [act("press b"), act("press c")]}
    out, _ = run(tokenizer, script, scores, budget=1, state_key="task_obs")
    # "press b" at cell 0 answers "Click. You are still in cell 0.": a new text, so a novel key, tied
    # with "press a" (both R = 0.5); the tie goes to the first sample, then cell 0 -> 1 -> 2
    texts = ["You are in cell 0 of 2.", "Click. You are still in cell 0.", "A door opens. You are in cell 1 of 2.",
             "A door opens. You are in cell 2 of 2."]
    assert out["trajectories"] == [{"keys": [state_digest("corridor", t) for t in texts], "won": True}]
    assert [s["reward"] for s in out["step_samples"][:2]] == [0.5, 0.5] and out["step_samples"][0]["novel"]


class SequenceEngine:
    """Answers request k with `answers[k]` (one sample)."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.prompts = tokenizer, iter(answers), []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        assert sampling_params.n == 1
        self.prompts.append(self.tokenizer.decode(prompt_token_ids))
        answer = next(self.answers)
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=answer, finish_reason="stop", logprobs=None)])


def test_grpo_runs_b_trajectories_with_step_prompts_and_their_returns(tokenizer):
    """Corridor "ab", 3 steps at most, B = 2. Trajectory 0: press a, press b -> won, return 10.
    Trajectory 1: press c (stays), an unparsable answer (-0.1), press a -> out of steps, return -0.1."""
    from openrlhf_3spo.rollout.grpo import GRPOExecutor

    async def make_env(label):
        return LocalEnv(CorridorEnv("ab", max_steps=3))

    engine = SequenceEngine(tokenizer, [act("press a"), act("press b"), act("press c"), "hmm", act("press a")])
    executor = GRPOExecutor(make_env, "alfworld", Settings(history_length=1))
    out = asyncio.run(executor.execute("p", TaskRequest("c", trajectories=2).to_label(), SamplingParams(max_tokens=32), 4096, tokenizer, engine))
    steps = out["step_samples"]
    assert [(s["action"], s["env_reward"], s["reward"]) for s in steps] == [
        ("press a", 0.0, 10.0), ("press b", 10.0, 10.0),
        ("press c", 0.0, pytest.approx(-0.1)), ("", pytest.approx(-0.1), pytest.approx(-0.1)), ("press a", 0.0, pytest.approx(-0.1)),
    ]
    assert all(s["trained"] and s["n"] == 1 for s in steps) and len({s["group_id"] for s in steps}) == 1
    assert [s["trajectory_id"][-2:] for s in steps] == ["/0", "/0", "/1", "/1", "/1"]
    assert [s["state_key"] for s in steps] == [key(0), key(1), key(0), key(0), key(0)]
    assert [(t["won"], t["return"]) for t in out["trajectories"]] == [(True, 10.0), (False, pytest.approx(-0.1))]
    assert out["trajectories"][1]["keys"] == [key(0), key(1)]
    # the same per-step prompt as 3SPO: a history window (here 1), not one growing context
    assert "[Action 2: (invalid action)]" in engine.prompts[4] and "[Action 1" not in engine.prompts[4]
    assert tokenizer.decode(steps[4]["context_ids"]) == engine.prompts[4]
