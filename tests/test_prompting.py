"""The prompt and action protocol: last <action> tag, normalised; history window; bad model output."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import re

from openrlhf_3spo.envs.prompting import SEARCH_TEMPLATE, answer_pattern, parse_action, render_prompt

ADMISSIBLE = ["go to cabinet 1", "go to fridge 1", "look", "take apple 1 from countertop 1"]


@pytest.mark.parametrize(
    "output, expected",
    [
        ("<think>fridge first</think><action>go to fridge 1</action>", "go to fridge 1"),
        ("<action>look</action> then <action>go to cabinet 1</action>", "go to cabinet 1"),  # last tag wins
        ("<ACTION>  Go   To\nFridge 1 </Action>", "go to fridge 1"),  # case and whitespace
        ("<action>take apple 1 from countertop 1</action><|im_end|>", "take apple 1 from countertop 1"),
        ("go to fridge 1", None),  # no tag
        ("<action>go to fridge 1", None),  # unclosed (cut by max_tokens)
        ("<action>open the pod bay doors</action>", None),  # not admissible
        ("<action></action>", None),
        ("", None),
        # the instruction's words echoed in the reasoning do not swallow the answer
        ("<think>I answer in <action> tags</think><action>look</action>", "look"),
        ("<think>an <ACTION> tag, then</think> <action>go to fridge 1</action> <action>oops", "go to fridge 1"),
    ],
)
def test_parse_action(output, expected):
    assert parse_action(output, ADMISSIBLE) == expected


def test_parse_action_reads_no_answer_from_runs_of_tags():
    # an old regex took 57 s on the first; the time per tag is measured in benchmarks/parse_action.py
    for output in ("<action>" * 16000, "<action>" * 16000 + "</action>", "</action><action>" * 8000):
        assert parse_action(output, ADMISSIBLE) is None


def test_parse_action_survives_huge_and_odd_output():
    huge = "<think>" + "ü🙂\x00" * 5000 + "</think><action>look</action>"
    assert parse_action(huge, ADMISSIBLE) == "look"
    assert parse_action(None, ADMISSIBLE) is None


@given(st.text(max_size=2000))
def test_parse_action_fuzz_returns_an_admissible_action_or_none(text):
    assert parse_action(text, ADMISSIBLE) in ADMISSIBLE + [None]


def test_prompt_shows_the_last_h_steps_and_the_admissible_actions():
    history = [(f"obs {i}", f"act {i}") for i in range(1, 5)]
    prompt = render_prompt("alfworld", "put a apple in fridge", history, "You arrive at fridge 1.", ADMISSIBLE)
    assert "Your task is to: put a apple in fridge." in prompt
    assert "You have taken 4 step(s) so far" in prompt
    assert "[Observation 3: obs 3]\n[Action 3: act 3]" in prompt and "[Action 4: act 4]" in prompt
    assert "obs 2" not in prompt and "act 1" not in prompt
    assert "You are now at step 5. Current observation: You arrive at fridge 1." in prompt
    assert "Admissible actions: ['go to cabinet 1', 'go to fridge 1', 'look', 'take apple 1 from countertop 1']" in prompt
    assert "<think>" in prompt and "<action>" in prompt


def test_prompt_without_history():
    first = render_prompt("alfworld", "t", [], "start", ["look"])
    assert "step(s) so far" not in first and "You are now at step 1." in first
    no_window = render_prompt("alfworld", "t", [("a", "b")], "now", ["look"], history_length=0)
    assert "[Observation" not in no_window and "You are now at step 2." in no_window


def test_prompt_rejects_bad_settings():
    with pytest.raises(ValueError, match="env_name"):
        render_prompt("minecraft", "t", [], "o", [])
    with pytest.raises(ValueError, match="history_length"):
        render_prompt("alfworld", "t", [], "o", [], history_length=-1)


def test_answer_pattern_matches_exactly_the_admissible_answers():
    actions = ["go to cabinet 1", "put mug 1 in/on coffeemachine 1", "click[< prev]", "click[b0 (x) 2.5 oz]", SEARCH_TEMPLATE]
    pattern = re.compile(answer_pattern(actions))
    for action in actions[:-1]:
        assert pattern.fullmatch(f"<action>{action}</action>")
        assert parse_action(f"<action>{action}</action>", actions) == action  # what it lets through parses back
    assert pattern.fullmatch("<action>search[red shoes size 9]</action>")
    for answer in ("<action>go to cabinet 2</action>", "<action>go to cabinet 1 </action>", "go to cabinet 1",
                   "<action>click[b0 x 2.5 oz]</action>", "<action>search[]</action>", "<action>search[a\nb]</action>"):
        assert not pattern.fullmatch(answer), answer
