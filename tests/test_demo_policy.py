"""The demo's CPU policy: prompt parsing, the engine interface, and the policy gradient, by hand."""

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from openrlhf_3spo.demo.policy import ByteTokenizer, LinearPolicy, parse_prompt, prompt_features
from openrlhf_3spo.envs.prompting import parse_action, render_prompt

ACTIONS = ["go to cabinet 1", "go to fridge 1", "take apple 1 from countertop 1", "look"]
HISTORY = [("You arrive at cabinet 1.", "open cabinet 1"), ("You open the cabinet 1.", "close cabinet 1")]


def prompt_ids(actions=ACTIONS, history=HISTORY, observation="On the countertop 1, you see a apple 1."):
    text = render_prompt("alfworld", "put a apple in fridge", history, observation, actions)
    return ByteTokenizer().apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


def params(n=1, temperature=1.0, logprobs=None):
    return SimpleNamespace(n=n, temperature=temperature, logprobs=logprobs, max_tokens=64)


def generate(policy, ids, **kwargs):
    return asyncio.run(policy.generate(ids, params(**kwargs))).outputs


def test_tokenizer_is_utf8_bytes():
    tok = ByteTokenizer()
    ids = tok.apply_chat_template([{"role": "user", "content": "pick ü"}], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids == list("pick ü".encode()) and len(ids) == 7
    assert tok.decode(ids) == "pick ü"


def test_parse_prompt_reads_task_observation_previous_action_and_actions():
    task, observation, previous, actions = parse_prompt(ByteTokenizer().decode(prompt_ids()))
    assert task == "put a apple in fridge"
    assert observation == "On the countertop 1, you see a apple 1."
    assert previous == "close cabinet 1"
    assert actions == ACTIONS
    # first step (no history), an action with a quote and a comma, an empty list
    odd = ["put mom's mug 1 in/on shelf 1", "say 'hi', then go", "look"]
    _, _, previous, actions = parse_prompt(ByteTokenizer().decode(prompt_ids(odd, history=[])))
    assert previous == "" and actions == odd
    assert parse_prompt(ByteTokenizer().decode(prompt_ids([])))[3] == []


def test_zero_weights_are_uniform_and_logprobs_match():
    policy = LinearPolicy(seed=0)
    actions, p = policy.probs(prompt_ids())
    assert actions == ACTIONS and np.allclose(p, 0.25)
    outputs = generate(policy, prompt_ids(), n=5, logprobs=0)
    assert len(outputs) == 5
    for out in outputs:
        assert parse_action(out.text, ACTIONS) in ACTIONS and out.finish_reason == "stop"
        assert out.token_ids == list(out.text.encode())
        assert len(out.logprobs) == len(out.token_ids)
        per_token = [step[t].logprob for step, t in zip(out.logprobs, out.token_ids)]
        assert per_token[0] == pytest.approx(np.log(0.25)) and sum(per_token) == pytest.approx(np.log(0.25))
    assert generate(policy, prompt_ids(), n=2)[0].logprobs is None


def test_greedy_at_temperature_zero_and_sampling_follows_the_weights():
    policy = LinearPolicy(seed=0)
    ids = prompt_ids()
    _, indices, values, owner = prompt_features(policy.dim, bytes(ids))
    policy.w[indices[owner == 2]] = 1.0  # raise "take apple 1 ..." only (its features are its own here)
    _, p = policy.probs(ids)
    assert np.argmax(p) == 2
    greedy = generate(policy, ids, n=4, temperature=0.0)
    assert {o.text for o in greedy} == {"<action>take apple 1 from countertop 1</action>"}
    sampled = generate(policy, ids, n=400)
    share = np.mean([o.text == "<action>take apple 1 from countertop 1</action>" for o in sampled])
    assert abs(share - p[2]) < 0.08


def test_gradient_is_phi_minus_expected_phi_times_advantage():
    policy = LinearPolicy(seed=0)
    ids = prompt_ids()
    _, indices, values, owner = prompt_features(policy.dim, bytes(ids))
    phi = np.array([np.bincount(indices[owner == k], values[owner == k], minlength=policy.dim) for k in range(4)])
    grad = policy.gradient([{"context_ids": ids, "action": ACTIONS[1]}], [2.0])
    assert np.allclose(grad, 2.0 * (phi[1] - phi.mean(axis=0)))  # uniform pi at zero weights
    # the mean over samples; opposite advantages on the same choice cancel
    both = policy.gradient([{"context_ids": ids, "action": ACTIONS[1]}] * 2, [2.0, -2.0])
    assert np.allclose(both, 0.0)
    # an action outside the list (an invalid answer) adds nothing but still counts in the mean
    assert np.allclose(policy.gradient([{"context_ids": ids, "action": ""}, {"context_ids": ids, "action": ACTIONS[1]}], [1.0, 2.0]), grad / 2)


def test_update_raises_the_probability_of_positive_advantage_actions():
    policy = LinearPolicy(lr=0.1, seed=0)
    ids = prompt_ids()
    samples = [{"context_ids": ids, "action": a} for a in ACTIONS]
    for _ in range(10):
        policy.update(samples, [1.5, -0.5, -0.5, -0.5])
    _, p = policy.probs(ids)
    assert p[0] > 0.5 and p[0] == p.max()
    # it carries over to a prompt with other words: the verb and overlap features are shared
    _, p_other = policy.probs(prompt_ids(["go to cabinet 2", "look"], observation="Nothing happens."))
    assert p_other[0] > 0.5


def test_prompt_without_actions_is_an_error():
    with pytest.raises(ValueError, match="no admissible action"):
        LinearPolicy().probs(prompt_ids([]))


def test_the_state_action_feature_tells_apart_states_with_the_same_words():
    """Two observations with the same words in another order share every word feature; only the
    (task, previous action, observation, action) feature differs, and cloning in one raises the
    action there more than in the other."""
    here = prompt_ids(observation="On the countertop 1, you see a apple 1.")
    there = prompt_ids(observation="You see a apple 1 on the countertop 1.")
    _, i_here, _, owner_here = prompt_features(LinearPolicy().dim, bytes(here))
    _, i_there, _, owner_there = prompt_features(LinearPolicy().dim, bytes(there))
    assert len(set(i_here[owner_here == 2]) ^ set(i_there[owner_there == 2])) == 2  # one feature each
    policy = LinearPolicy(lr=0.1, seed=0)
    for _ in range(5):
        policy.update([{"context_ids": here, "action": ACTIONS[2]}], [1.0])
    assert policy.probs(here)[1][2] > policy.probs(there)[1][2] > 0.25
