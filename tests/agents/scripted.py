"""A rollout engine for the end-to-end tests: vLLM's real generations, with every other answer
replaced by `<action>look</action>` (admissible in every ALFWorld state). A random tiny model never
names an admissible action, so without this every step is invalid, every reward equal and every
advantage zero; with it, groups mix rewards and gradients flow.

Every other sample of a request for several (3SPO's candidates at a state: the same ones on a
rerun), and every other request of one sample (GRPO's trajectories). Each call also appends a
fingerprint of the weights vLLM holds to $SCRIPTED_LOG, to check the trainer's weight sync, and
once per process the OpenRLHF symbols replaced at run time in it."""

import inspect
import itertools
import json
import os
import sys

ANSWER = "<think>look around</think><action>look</action>"
_reported = False


def replaced_openrlhf_symbols():
    """OpenRLHF's functions, classes and methods that were replaced in this process at run time:
    those whose code comes from openrlhf_3spo. Covers every loaded OpenRLHF module, the trainer's
    module included, and Ray's copy of the PPOTrainer actor's methods."""
    import openrlhf.trainer.ppo_trainer  # noqa: F401  (where OpenRLHF 0.11.2 needs substitution)

    def ours(obj):  # functools.wraps keeps OpenRLHF's __module__: the code's file tells
        code = getattr(obj, "__code__", None)
        file = code.co_filename if code is not None else ""
        shim = f"{os.sep}cpu_shims{os.sep}" in file  # the flash_attn stand-in, imported as flash_attn
        return (getattr(obj, "__module__", None) or "").startswith("openrlhf_3spo") or (
            f"{os.sep}openrlhf_3spo{os.sep}" in file and not shim)

    found = set()
    for name, module in list(sys.modules.items()):
        if name != "openrlhf" and not name.startswith("openrlhf."):
            continue
        for attr, obj in list(vars(module).items()):
            if ours(obj):
                found.add(f"{name}.{attr}")
            if (inspect.isclass(obj) and obj.__module__ == name) or hasattr(obj, "__ray_metadata__"):
                classes = [obj.__ray_metadata__.modified_class] if hasattr(obj, "__ray_metadata__") else [obj]
                for cls in classes:
                    found |= {f"{name}.{attr}.{method}" for method, fn in vars(cls).items() if ours(fn)}
    return sorted(found)


def embedding_sum(worker):
    """Runs in vLLM's worker process: the float64 sum of the token-embedding weights."""
    return float(worker.model_runner.model.model.embed_tokens.weight.double().sum())


class ScriptedEngine:
    _single_requests = itertools.count()

    def __init__(self, engine, tokenizer):
        self.engine, self.tokenizer = engine, tokenizer

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        result = await self.engine.generate(prompt_token_ids, sampling_params)
        if len(result.outputs) > 1:
            scripted = result.outputs[1::2]
        else:
            scripted = result.outputs if next(self._single_requests) % 2 else []
        for output in scripted:
            assert output.logprobs is None, "the scripted engine writes no log-probs"
            output.text = ANSWER
            output.token_ids = self.tokenizer.encode(ANSWER, add_special_tokens=False) + [self.tokenizer.eos_token_id]
            output.finish_reason = "stop"
        if os.environ.get("SCRIPTED_LOG"):
            global _reported
            (weights,) = await self.engine.llm.collective_rpc(embedding_sum)
            with open(os.environ["SCRIPTED_LOG"], "a") as f:
                f.write(json.dumps({"embedding_sum": weights}) + "\n")
                if not _reported:  # once per process: a Ray worker that loaded the plugin
                    _reported = True
                    f.write(json.dumps({"replaced": replaced_openrlhf_symbols()}) + "\n")
        return result


def scripted(executor_cls):
    """`executor_cls` (an agent function's executor) over the scripted engine."""

    class Scripted(executor_cls):
        async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
            engine = ScriptedEngine(llm_engine, hf_tokenizer)
            return await super().execute(prompt, label, sampling_params, max_length, hf_tokenizer, engine, images)

    return Scripted
