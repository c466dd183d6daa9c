"""vLLM in this process, behind the `generate` that OpenRLHF's rollout actors give agent executors."""

import copy
import uuid


class VLLMEngine:
    """An AsyncLLMEngine with OpenRLHF's `RolloutRayActor.generate(prompt_token_ids, sampling_params)`.
    Build it inside a running event loop."""

    def __init__(self, model_dir, max_model_len=2048, seed=0, **engine_args):
        import vllm

        args = vllm.AsyncEngineArgs(
            model=model_dir, dtype="float32", enforce_eager=True, max_model_len=max_model_len, seed=seed, **engine_args
        )
        self.llm = vllm.AsyncLLMEngine.from_engine_args(args)
        self.requests = []  # n of each request, for tests and metrics

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        from vllm.inputs import TokensPrompt

        self.requests.append(sampling_params.n)
        final = None
        request = TokensPrompt(prompt_token_ids=prompt_token_ids)
        async for output in self.llm.generate(request, copy.deepcopy(sampling_params), request_id=uuid.uuid4().hex):
            final = output
        return final

    def shutdown(self):
        self.llm.shutdown()
