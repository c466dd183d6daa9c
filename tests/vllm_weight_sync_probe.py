"""Run as a script, under the --cpu mode's environment: vLLM on CPU loads the tiny model, then gets
two weight syncs as OpenRLHF sends them (every weight moved, then every weight back). Prints one JSON
line: the greedy answer before, that of the moved policy (transformers), and after each sync."""

import copy
import json
import os
import sys

import torch
import transformers
from vllm import LLM, SamplingParams


def sync_weights(worker, weights):
    from openrlhf_3spo.plugin.cpu import load_weight_on_cpu

    for name, weight in weights:
        load_weight_on_cpu(worker.model_runner, name, weight)


def main(model_dir):
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # collective_rpc sends sync_weights itself
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    messages = [{"role": "user", "content": "You are in the kitchen. Your task is to: put a mug in the fridge."}]
    prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    engine = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)

    def greedy():
        return list(engine.generate([{"prompt_token_ids": prompt_ids}], params, use_tqdm=False)[0].outputs[0].token_ids)

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    moved = copy.deepcopy(hf_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in moved.parameters():
            param.add_(torch.randn_like(param) * 0.5)
        moved_ids = moved.generate(torch.tensor([prompt_ids]), max_new_tokens=8, do_sample=False)[0, len(prompt_ids) :]
    result = {"before": greedy(), "moved": moved_ids.tolist()}
    for key, model in (("after_first_sync", moved), ("after_second_sync", hf_model)):
        engine.collective_rpc(sync_weights, args=([(n, p.detach().clone()) for n, p in model.named_parameters()],))
        engine.reset_prefix_cache()  # as OpenRLHF does after a sync
        result[key] = greedy()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
