"""One definition of every setting: the flags, their checks, and the values that travel in the labels."""

import argparse
import re
from dataclasses import fields
from types import SimpleNamespace

import pytest

from conftest import param_id

from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings, add_flags


def test_every_setting_becomes_one_flag_with_its_default_and_choices():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    flags = {a.dest: a for a in parser._actions if a.dest.startswith("spo3.")}
    assert sorted(flags) == sorted(f"spo3.{f.name}" for f in fields(Settings))
    assert flags["spo3.write_off"].choices == ("branch", "paper") and flags["spo3.g_max"].default == 8
    ns = parser.parse_args(["--spo3.g_max", "4", "--spo3.max_steps", "20", "--spo3.webshop_reward", "score"])
    assert (getattr(ns, "spo3.g_max"), getattr(ns, "spo3.max_steps"), getattr(ns, "spo3.webshop_reward")) == (4, 20, "score")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"alpha": float("inf")}, "--spo3.alpha must be a finite number, got inf"),
        ({"xi": float("nan")}, "--spo3.xi must be a finite number, got nan"),
        ({"alpha": 0.0}, "--spo3.alpha must be > 0, got 0.0"),
        ({"zeta": 1.5}, "--spo3.zeta must be <= 1, got 1.5"),
        ({"g_max": 1}, "--spo3.g_max must be >= 2, got 1"),
        ({"g_max": 10**8}, "--spo3.g_max must be <= 1024, got 100000000"),
        ({"history_length": -1}, "--spo3.history_length must be >= 0, got -1"),
        ({"max_steps": -1}, "--spo3.max_steps must be >= 0, got -1"),
        ({"invalid_penalty": -0.1}, "--spo3.invalid_penalty must be >= 0, got -0.1"),
        ({"gigpo_gamma": 1.5}, "--spo3.gigpo_gamma must be <= 1, got 1.5"),
        ({"gigpo_norm": "mean_norm"}, "--spo3.gigpo_norm must be one of mean_std, mean, got 'mean_norm'"),
        ({"write_off": "never"}, "--spo3.write_off must be one of branch, paper, got 'never'"),
        ({"decoding": "guided"}, "--spo3.decoding must be one of free, constrained, got 'guided'"),
    ],
    ids=param_id,
)
def test_out_of_range_values_name_their_flag(values, message):
    assert Settings.problems(values)[0] == message
    with pytest.raises(ValueError, match=re.escape(message)):  # no Settings holds an out-of-range value
        Settings(**values)


def test_values_travel_in_the_task_request():
    run = Settings(g_max=4, history_length=1, max_steps=12, write_off="paper")
    request = TaskRequest("task", trajectories=8, version=3, settings=run)
    assert TaskRequest.from_label(request.to_label()) == request
    assert TaskRequest.from_label(request) is request  # read once per task, then handed on
    assert TaskRequest.from_label("plain dataset label") == TaskRequest("plain dataset label")  # B = 1, the defaults
    with pytest.raises(ValueError, match="--spo3.g_max must be >= 2"):
        TaskRequest.from_label(dict(request.to_label(), settings=dict(run.to_dict(), g_max=0)))
    with pytest.raises(ValueError, match="task request without version"):  # a field left out is an error
        TaskRequest.from_label({k: v for k, v in request.to_label().items() if k != "version"})
    with pytest.raises(ValueError, match="trajectory budget must be a whole number >= 1, got 0"):
        TaskRequest.from_label(dict(request.to_label(), trajectories=0))
    assert Settings.from_namespace(SimpleNamespace(**run.to_dict())) == run


def test_the_samples_generator_puts_the_run_settings_in_every_label(monkeypatch):
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    from openrlhf_3spo.agents import agent_file
    from openrlhf_3spo.plugin.samples_generator import StepSamplesGenerator

    sent = []
    monkeypatch.setattr(SamplesGenerator, "_dispatch_prompts_to_vllm", lambda self, prompts, labels, **kw: sent.append((labels, kw)))
    run = Settings(history_length=1, max_steps=7)
    for mode, estimator in (("grpo", "step_grpo"), ("multiturn", "group_norm")):
        generator = StepSamplesGenerator.__new__(StepSamplesGenerator)  # no vLLM engines needed
        generator.args = SimpleNamespace(
            train=SimpleNamespace(agent_func_path=agent_file("alfworld", mode)),
            algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator)),
            rollout=SimpleNamespace(n_samples_per_prompt=8),
            spo3=SimpleNamespace(**run.to_dict()),
        )
        generator.state_scores = None
        generator._dispatch_prompts_to_vllm(["p1", "p2"], ["a", "b"])
    (grpo_labels, grpo_kwargs), (multiturn_labels, multiturn_kwargs) = sent
    assert grpo_labels == [TaskRequest(x, trajectories=8, settings=run).to_label() for x in "ab"]
    assert grpo_kwargs["n_samples_per_prompt"] == 1  # one call per task, B trajectories in it
    assert multiturn_labels == [TaskRequest(x, settings=run).to_label() for x in "ab"] and "n_samples_per_prompt" not in multiturn_kwargs
    # in evaluation a step mode plays one plain episode per call: no budget, OpenRLHF's own n
    generator.args.train.agent_func_path = agent_file("alfworld", "3spo")
    generator._evaluating = True
    generator._dispatch_prompts_to_vllm(["p1"], ["a"], n_samples_per_prompt=2)
    eval_labels, eval_kwargs = sent[-1]
    assert eval_labels == [TaskRequest("a", settings=run, eval=True).to_label()] and eval_kwargs["n_samples_per_prompt"] == 2
