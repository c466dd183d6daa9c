"""The agent functions in OpenRLHF's plain multi-turn mode and the step-wise GRPO mode, loaded as
OpenRLHF loads them."""

import asyncio
import json
from types import SimpleNamespace

import pytest

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.envs.alfworld import dataset_rows, game_file_of, load_game
from openrlhf_3spo.rollout.request import TaskRequest


class ScriptedEngine:
    """OpenRLHF's engine interface (`generate(prompt_token_ids, sampling_params)`), answering from a script."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.prompts = tokenizer, list(answers), []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.prompts.append(list(prompt_token_ids))
        text = self.answers.pop(0)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        logprobs = [{t: SimpleNamespace(logprob=-0.5)} for t in ids]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=logprobs)])


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


def _run(tokenizer, row, answers):
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    executor = _load_agent_executor(agent_file("alfworld", "multiturn"))
    engine = ScriptedEngine(tokenizer, answers)
    params = SamplingParams(max_tokens=64, logprobs=1)
    output = asyncio.run(executor.execute(row["input"], row["label"], params, 4096, tokenizer, engine))
    return output, engine


def test_walkthrough_episode_through_openrlhfs_multiturn_executor(tokenizer):
    row = next(r for r in dataset_rows("train", "shipped") if "pick_and_place_simple" in r["label"])
    walkthrough = load_game(game_file_of(row["label"]))["walkthrough"]
    answers = ["<think>first, look</think><action>dance</action>"]  # one invalid step
    answers += [f"<think>plan</think><action>{a.upper()}</action>" for a in walkthrough]
    output, engine = _run(tokenizer, row, answers)
    assert output["reward"] == pytest.approx(10.0 - 0.1)
    assert output["scores"] == 1.0 and output["label"] == row["label"]
    assert len(output["action_ranges"]) == len(walkthrough) + 1
    tokens = output["observation_tokens"]
    # each action range holds exactly the generated tokens; the text around it is the env's prompts
    for (start, end), answer in zip(output["action_ranges"], answers):
        assert tokenizer.decode(tokens[start:end], skip_special_tokens=True) == answer
    context = tokenizer.decode(tokens)
    assert context.count("<|im_start|>user") == len(walkthrough) + 1
    assert "Current observation: Nothing happens." in context
    assert "<|im_end|><|im_end|>" not in context  # the turn end is not repeated
    assert len(output["rollout_log_probs"]) == len(tokens)
    # every prompt the engine saw is the running context
    assert engine.prompts[-1] == tokens[: output["action_ranges"][-1][0]]


def test_label_naming_no_env_is_a_clear_error(tokenizer):
    row = {"input": "x", "label": json.dumps({"game": "a.tw-pddl"})}
    with pytest.raises(ValueError, match="names no known env"):
        _run(tokenizer, row, ["<action>look</action>"])


def test_webshop_goal_through_openrlhfs_multiturn_executor(tokenizer):
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    from openrlhf_3spo.envs.webshop import catalog, dataset_rows

    row = dataset_rows("eval", "shipped", eval_goals=20)[0]
    goal = catalog("shipped").goals[json.loads(row["label"])["goal"]]
    name = catalog("shipped").by_asin[goal["asin"].lower()]["name"].lower()
    path = [f"search[{name}]", f"click[{goal['asin'].lower()}]"] + [f"click[{o}]" for o in goal["goal_options"]] + ["click[buy now]"]
    engine = ScriptedEngine(tokenizer, [f"<think>go</think><action>{a}</action>" for a in path])
    executor = _load_agent_executor(agent_file("webshop", "multiturn"))
    output = asyncio.run(executor.execute(row["input"], row["label"], SamplingParams(max_tokens=64), 8192, tokenizer, engine))
    assert output["reward"] == 10.0 and output["scores"] == 1.0 and len(output["action_ranges"]) == len(path)
    assert "Admissible actions: ['search[<your query>]']" in tokenizer.decode(engine.prompts[0])


def test_grpo_agent_runs_b_walkthrough_trajectories_in_the_env_pool(tokenizer):
    """B = 2 trajectories of one ALFWorld game, concurrently, in the env worker pool; the engine
    answers the walkthrough's step k at step k, so both win: every step carries the return 10."""
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    from openrlhf_3spo.agents import step_estimator

    row = next(r for r in dataset_rows("train", "shipped") if "pick_and_place_simple" in r["label"])
    walkthrough = load_game(game_file_of(row["label"]))["walkthrough"]

    class Walkthrough:
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            step = int(tokenizer.decode(prompt_token_ids).split("You are now at step ")[1].split(".")[0])
            text = f"<action>{walkthrough[step - 1]}</action>"
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])

    path = agent_file("alfworld", "grpo")
    assert step_estimator(path) == "step_grpo" and step_estimator(agent_file("alfworld", "3spo")) == "3spo"
    assert step_estimator(agent_file("alfworld", "multiturn")) is None
    executor = _load_agent_executor(path)
    label = TaskRequest(row["label"], trajectories=2).to_label()
    out = asyncio.run(executor.execute(row["input"], label, SamplingParams(max_tokens=64), 4096, tokenizer, Walkthrough()))
    assert [(t["won"], t["return"]) for t in out["trajectories"]] == [(True, 10.0), (True, 10.0)]
    steps = out["step_samples"]
    assert len(steps) == 2 * len(walkthrough) and all(s["trained"] and s["reward"] == 10.0 for s in steps)
    assert len({s["trajectory_id"] for s in steps}) == 2 and len({s["group_id"] for s in steps}) == 1


@pytest.mark.parametrize("mode", ["3spo", "grpo", "gigpo"])
def test_every_step_mode_plays_its_eval_episode_as_openrlhf_calls_it(tokenizer, mode):
    """An eval label (the samples generator's, in OpenRLHF's eval): one plain episode, called with
    OpenRLHF's arguments (`images` included), whose reward is task success."""
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    executor = _load_agent_executor(agent_file("corridor", mode))
    label = TaskRequest(json.dumps({"env": "corridor", "secret": "ab"}), eval=True).to_label()
    engine = ScriptedEngine(tokenizer, ["<action>press a</action>", "<action>press b</action>"])
    params = SamplingParams(max_tokens=16)
    out = asyncio.run(executor.execute(  # as OpenRLHF's rollout actor calls it: by keyword
        prompt="p", label=label, sampling_params=params, max_length=4096, hf_tokenizer=tokenizer, llm_engine=engine, images=None,
    ))
    assert (out["reward"], out["extra_logs"]["won"], out["extra_logs"]["steps"]) == (1.0, 1.0, 2.0)
    assert "step_samples" not in out and len(engine.prompts) == 2


def test_a_corridor_label_builds_the_corridor():
    from openrlhf_3spo.agents.textenv import make_env
    from openrlhf_3spo.envs.corridor import dataset_rows

    rows = dataset_rows(3, secret="ba")
    assert len(rows) == 3 and rows[0]["input"] == "reach the end of the corridor (2 cells)"
    env = make_env(rows[0]["label"], max_steps=4)
    env.reset()
    assert env.max_steps == 4 and env.step("press b").text == "A door opens. You are in cell 1 of 2."
    with pytest.raises(ValueError, match="secret must be"):
        dataset_rows(1, secret="xyz")
