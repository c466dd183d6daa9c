"""OpenRLHF's real trainer, end to end on CPU (`openrlhf-3spo train --cpu`): Ray, DeepSpeed, vLLM,
the agent functions and the state-score actors, with a tiny random model, on the shipped ALFWorld
games. Each run is the recipe as users run it (or the plain command), scaled down.

A random model never names an admissible action, so every reward would be equal and no gradient
would flow: the runs use the agent functions over a scripted engine (tests/agents/scripted.py)
that answers `look` in every other sample, and logs the weights vLLM holds at each request.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from openrlhf_3spo.envs import alfworld
from openrlhf_3spo.io import atomic_write_jsonl
from openrlhf_3spo.plugin import cpu as cpu_mode
from openrlhf_3spo.plugin.compat import SUBSTITUTED
from openrlhf_3spo.plugin.samples_generator import padded_size
from openrlhf_3spo.state.snapshot import load_snapshot

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO, "recipes")
AGENTS = os.path.join(REPO, "tests", "agents")
BIN = os.path.dirname(sys.executable)
TIMEOUT = 900

# the recipes' settings at CPU scale: 2 tasks a step, 2 steps, 2 env steps per episode, short
# answers; lr 1e-3 because at the recipes' 1e-6 one step moves no bf16 weight
SCALE = [
    "--rollout.batch_size", "2", "--rollout.n_samples_per_prompt", "2", "--rollout.micro_batch_size", "4",
    "--train.batch_size", "4", "--train.micro_batch_size", "2", "--train.num_episodes", "1", "--data.max_samples", "4",
    "--spo3.max_steps", "2", "--spo3.g_max", "4", "--spo3.env_workers", "2", "--rollout.max_new_tokens", "16",
    "--actor.adam.lr", "1e-3", "--eval.steps", "1", "--ckpt.save_steps", "1", "--ckpt.save_hf",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from openrlhf_3spo.demo.smollm2 import write_tiny_model

    root = tmp_path_factory.mktemp("trainer-cpu")
    model = write_tiny_model(str(root / "model"))
    data = root / "data"
    atomic_write_jsonl(str(data / "train.jsonl"), alfworld.dataset_rows("train", "shipped"))
    atomic_write_jsonl(str(data / "eval.jsonl"), alfworld.dataset_rows("valid_seen", "shipped")[:2])
    return root, model, str(data)


def _run(command, out, env_extra=None):
    """Runs a training command; returns its output, the logged status of each global step, the
    eval metrics of each step and the weight fingerprints the scripted engine logged."""
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "vllm_weights.jsonl")
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "SCRIPTED_LOG": log, **(env_extra or {})}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the test session's setting: vLLM runs as users run it
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out, timeout=TIMEOUT)
    output = result.stdout + result.stderr
    with open(os.path.join(out, "train.log"), "w") as f:  # kept for a failed test's reader
        f.write(output)
    assert result.returncode == 0, output[-6000:]

    def logged(pattern):
        return {int(step): ast.literal_eval(re.sub(r"\bnan\b", "None", status)) for step, status in re.findall(pattern, output)}

    steps = logged(r"Global step (\d+): (\{.*\})")
    evals = logged(r"global_step (\d+), eval_metrics: (\{.*\})")
    with open(log) as f:
        weights = [entry["embedding_sum"] for entry in map(json.loads, f) if "embedding_sum" in entry]
    return output, steps, evals, weights


def _replaced_symbols(out):
    """What the scripted engine found replaced in OpenRLHF, in each rollout process of the run."""
    with open(os.path.join(out, "vllm_weights.jsonl")) as f:
        reports = [entry["replaced"] for entry in map(json.loads, f) if "replaced" in entry]
    assert reports, "no rollout process reported"
    return reports


def _recipe(name, workspace, out, *extra):
    root, model, data = workspace
    mode = name.split("_")[1]
    agent = os.path.join(AGENTS, f"alfworld_{mode}_scripted.py")
    command = ["bash", os.path.join(RECIPES, name), "--cpu", "--actor.model_name_or_path", model,
               "--train.agent_func_path", agent, *SCALE, *extra]
    return _run(command, out, {"DATA": data, "OUT": out})


def _embedding_sum(model_dir):
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    return float(weights["model.embed_tokens.weight"].to(torch.bfloat16).double().sum())


def _distinct(values):
    return [v for i, v in enumerate(values) if v not in values[:i]]


def _table(directory):
    """A saved state table, merged over its shards: (state counts, t, version, tried pairs)."""
    parts = [load_snapshot(os.path.join(directory, d)) for d in sorted(os.listdir(directory))]
    counts = {}
    for table, _, _ in parts:
        state = table.state_dict()
        counts.update(zip(state["keys"], zip(state["n_total"].tolist(), state["n_success"].tolist())))
    t = {table.t for table, _, _ in parts}
    assert len(t) == 1, f"the shards disagree on t: {t}"
    return counts, t.pop(), max(m["version"] for _, m, _ in parts), set().union(*(tried for _, _, tried in parts))


def _check_weights_reach_vllm(out, workspace, weights):
    """vLLM generated step 1 with the initial weights, step 2 and the evals with the trained ones."""
    _, model, _ = workspace
    ckpt = os.path.join(out, "ckpt")
    initial, step1, step2 = _embedding_sum(model), _embedding_sum(f"{ckpt}/global_step1_hf"), _embedding_sum(f"{ckpt}/global_step2_hf")
    assert len({initial, step1, step2}) == 3  # the weights change at each step
    assert _distinct(weights) == [initial, step1, step2]


@pytest.fixture(scope="module")
def spo3_run(workspace):
    out = str(workspace[0] / "alfworld_3spo")
    return out, *_recipe("alfworld_3spo_1.5b.sh", workspace, out)


def test_3spo_recipe_trains_two_steps_through_the_real_trainer(spo3_run, workspace):
    out, output, steps, evals, weights = spo3_run
    assert sorted(steps) == [1, 2]
    for step, status in steps.items():
        assert status["spo3/version"] == step  # the table advances once per step
        assert status["spo3/steps_per_task"] > 0 and status["spo3/steps_with_n_4"] > 0  # the n each step drew
        assert "spo3_group" not in status  # ids are not metrics
    assert steps[1]["actor_grad_norm"] > 0  # mixed rewards in a group: non-zero advantages
    _check_weights_reach_vllm(out, workspace, weights)


def test_3spo_tables_ride_with_checkpoints_and_eval_leaves_them_alone(spo3_run):
    out, output, steps, evals, weights = spo3_run
    tables = {step: _table(os.path.join(out, "ckpt", "spo3_state", f"global_step{step}")) for step in (1, 2)}
    for step, (counts, t, version, tried) in tables.items():
        assert (t, version) == (steps[step]["spo3/t"], step)
    # eval ran after step 1's checkpoint: the table grew by step 2's training trajectories only
    assert sorted(evals) == [1, 2]
    assert tables[2][1] - tables[1][1] == steps[2]["spo3/recorded_trajectories"] > 0
    assert len(tables[2][3]) > len(tables[1][3]) > 0  # the scripted `look` pairs were tried
    # eval counts task success (none here), not the step rewards' mean (-0.1 per invalid step)
    assert evals[1]["eval_default_pass1"] == 0.0 and evals[1]["eval_num_samples"] == 2


def test_a_resumed_3spo_run_ends_with_the_uninterrupted_runs_table(spo3_run, workspace):
    """The checkpoint of step 1, resumed (the recipe sets --ckpt.load_enable) with 2 score shards
    instead of 1: step 2 ends with the same counts, t, version and tried pairs."""
    out, _, steps, _, _ = spo3_run
    resumed = str(workspace[0] / "alfworld_3spo_resumed")
    shutil.copytree(os.path.join(out, "ckpt"), os.path.join(resumed, "ckpt"), ignore=shutil.ignore_patterns("spo3_live"))
    for path in ("_actor/global_step2", "global_step2_hf", "spo3_state/global_step2"):
        shutil.rmtree(os.path.join(resumed, "ckpt", path))
    with open(os.path.join(resumed, "ckpt", "_actor", "latest"), "w") as f:
        f.write("global_step1")
    output, resumed_steps, _, _ = _recipe("alfworld_3spo_1.5b.sh", workspace, resumed, "--spo3.score_shards", "2")
    assert sorted(resumed_steps) == [2]  # resumed at step 1
    assert sorted(os.listdir(os.path.join(resumed, "ckpt", "spo3_state", "global_step2"))) == ["shard-0", "shard-1"]
    assert _table(os.path.join(resumed, "ckpt", "spo3_state", "global_step2")) == _table(
        os.path.join(out, "ckpt", "spo3_state", "global_step2"))
    assert resumed_steps[2]["spo3/t"] == steps[2]["spo3/t"]


def test_grpo_recipe_trains_two_steps_through_the_real_trainer(workspace):
    out = str(workspace[0] / "alfworld_grpo")
    output, steps, evals, weights = _recipe("alfworld_grpo_1.5b.sh", workspace, out)
    assert sorted(steps) == [1, 2] and sorted(evals) == [1, 2]
    assert steps[1]["actor_grad_norm"] > 0  # trajectories with more `look` steps return more
    assert not os.path.exists(os.path.join(out, "ckpt", "spo3_state"))
    _check_weights_reach_vllm(out, workspace, weights)


def test_gigpo_recipe_trains_two_steps_through_the_real_trainer(workspace):
    out = str(workspace[0] / "alfworld_gigpo")
    output, steps, evals, weights = _recipe("alfworld_gigpo_1.5b.sh", workspace, out)
    assert sorted(steps) == [1, 2] and sorted(evals) == [1, 2]
    assert steps[1]["actor_grad_norm"] > 0
    # the anchor-group size histogram: fractions of the batch's steps, summing to 1
    histogram = {k: v for k, v in steps[1].items() if k.startswith("spo3/steps_in_anchor_group_")}
    assert histogram and abs(sum(histogram.values()) - 1) < 1e-6, histogram
    assert histogram.get("spo3/steps_in_anchor_group_1", 0) < 1  # every task's B trajectories share its start state
    assert not os.path.exists(os.path.join(out, "ckpt", "spo3_state"))
    _check_weights_reach_vllm(out, workspace, weights)


def test_two_actor_ranks_do_equal_work_and_a_fresh_run_starts_empty(spo3_run, workspace):
    """Two DeepSpeed ranks and G_max 3 (groups of 3), step batches padded to a multiple of
    lcm(2 ranks x 1, 2 ranks x 5) = 10: no rank waits on the other (ZeRO would hang). Run in the 3SPO recipe's checkpoint folder without --ckpt.load_enable:
    its table starts empty."""
    out, _, recipe_steps, _, _ = spo3_run
    _, model, data = workspace
    agent = os.path.join(AGENTS, "alfworld_3spo_scripted.py")
    command = [
        "openrlhf-3spo", "train", "--cpu", "--actor.model_name_or_path", model, "--train.agent_func_path", agent,
        "--advantage_estimator", "3spo", "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "2",
        "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "1", "--ds.zero_stage", "2",
        "--algo.kl.init_coef", "0",  # no reference model: two ranks are enough for two cores
        "--data.prompt_dataset", f"{data}/train.jsonl", "--data.input_key", "input", "--data.label_key", "label",
        "--ckpt.path", os.path.join(out, "ckpt"), "--ckpt.output_dir", os.path.join(out, "two-ranks-model"),
        *SCALE, "--rollout.micro_batch_size", "1", "--train.micro_batch_size", "5", "--train.batch_size", "10",
        "--spo3.g_max", "3", "--eval.steps", "-1", "--ckpt.save_steps", "-1",
    ]
    output, steps, _, _ = _run(command, str(workspace[0] / "two_ranks"))
    assert sorted(steps) == [1, 2]
    for status in steps.values():
        trained, padded = status["spo3/trained_samples"], status["spo3/padded_samples"]
        assert trained + padded == padded_size(trained, ranks=2, rollout_micro_batch=1, train_micro_batch=5)
    assert any(status["spo3/padded_samples"] > 0 for status in steps.values()), steps  # a count that needed padding
    # fresh: t counts this run's trajectories only (a fresh table's t is 1)
    assert steps[1]["spo3/t"] == 1 + steps[1]["spo3/recorded_trajectories"] < recipe_steps[2]["spo3/t"]


def test_plain_openrlhf_with_the_patch_series_trains_3spo(patched_openrlhf, workspace):
    """OpenRLHF with patches/ applied: plain `python -m openrlhf.cli.train_ppo_ray` finds the plugin
    through its entry point and trains 2 steps of 3SPO (metrics, tables, weight sync), and no
    OpenRLHF symbol is replaced at run time but the CPU mode's own (`cpu.CPU_PATCHED`)."""
    root, model, data = workspace
    out = str(root / "plain_openrlhf")
    agent = os.path.join(AGENTS, "alfworld_3spo_scripted.py")
    command = [
        sys.executable, "-m", "openrlhf.cli.train_ppo_ray", "--algo.advantage.estimator", "3spo",
        "--train.agent_func_path", agent, "--actor.model_name_or_path", model,
        "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "1", "--ref.num_nodes", "1", "--ref.num_gpus_per_node", "1",
        "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "1", "--train.colocate_all", "--ds.zero_stage", "3",
        "--ds.param_dtype", "bf16", "--algo.kl.use_loss", "--algo.kl.init_coef", "0.01", "--algo.kl.estimator", "k3",
        "--ds.attn_implementation", "sdpa", "--vllm.enforce_eager", "--vllm.sync_backend", "gloo",  # what --cpu sets
        "--data.prompt_dataset", f"{data}/train.jsonl", "--eval.dataset", f"{data}/eval.jsonl",
        "--data.input_key", "input", "--data.label_key", "label", "--eval.n_samples_per_prompt", "1",
        "--ckpt.path", os.path.join(out, "ckpt"), "--ckpt.output_dir", os.path.join(out, "model"), *SCALE,
    ]
    env = {
        **cpu_mode.ENV,
        "PYTHONPATH": patched_openrlhf,
        # OpenRLHF's own ray.init, with the placeholder GPU count the --cpu mode gives Ray
        "RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 16, "GPU": 16}),
    }
    output, steps, evals, weights = _run(command, out, env)
    assert "Loading OpenRLHF plugin openrlhf_3spo (openrlhf_3spo.plugin:register)" in output
    assert sorted(steps) == [1, 2] and sorted(evals) == [1, 2]
    for step, status in steps.items():
        assert status["spo3/version"] == step and status["spo3/steps_per_task"] > 0
    assert steps[1]["actor_grad_norm"] > 0
    for step in (1, 2):
        counts, t, version, tried = _table(os.path.join(out, "ckpt", "spo3_state", f"global_step{step}"))
        assert (t, version) == (steps[step]["spo3/t"], step)
    _check_weights_reach_vllm(out, workspace, weights)
    # nothing replaced in OpenRLHF but what the CPU mode makes CPU-safe
    cpu_patched = {f"{module}.{symbol}" for module, symbols, _ in cpu_mode.CPU_PATCHED
                   for symbol in symbols.split(", ") if module.startswith("openrlhf")}
    for replaced in _replaced_symbols(out):
        assert set(replaced) <= cpu_patched, set(replaced) - cpu_patched
        assert not set(replaced) & {f"{module}.{symbol}" for module, symbol, _ in SUBSTITUTED}


def test_the_released_openrlhf_path_is_seen_replacing_symbols(spo3_run):
    """The check above can fail: on OpenRLHF 0.11.2 as released, the same scan finds every
    substitution of OpenRLHF's that `compat.SUBSTITUTED` lists."""
    out = spo3_run[0]
    expected = {f"{module}.{symbol}" for module, symbol, _ in SUBSTITUTED if module.startswith("openrlhf.")}
    for replaced in _replaced_symbols(out):
        assert expected <= set(replaced), expected - set(replaced)
