"""One agent step as both step-wise executors (3SPO, GRPO) take it: the step's prompt as token ids,
n samples from the engine, and the action each sample names."""

import copy

from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

from openrlhf_3spo.envs.prompting import answer_pattern, parse_action, render_prompt


def step_context(tokenizer, env_name, task, history, observation, history_length, limit):
    """Token ids of the step's prompt, history dropped from the left until it fits in `limit` tokens;
    None if even the task, the current observation and the admissible actions do not."""
    for window in range(history_length, -1, -1):
        text = render_prompt(env_name, task, history, observation.text, observation.admissible_actions, window)
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if len(ids) <= limit:
            return list(ids)
    return None


def context_limit(sampling_params, max_length):
    """Room for the prompt: the context length less the longest answer."""
    return max_length - (sampling_params.max_tokens or 1)


async def generate(engine, context, sampling_params, n, max_length, observation=None):
    """n samples of one context in one engine request; given the observation, each answer is
    constrained to name one of its admissible actions (`--spo3.decoding constrained`)."""
    params = copy.deepcopy(sampling_params)
    params.n = n
    if observation is not None:
        params.structured_outputs = StructuredOutputsParams(regex=answer_pattern(observation.admissible_actions))
    room = max_length - len(context)  # OpenRLHF's max_new_tokens may be None: the context left
    params.max_tokens = min(params.max_tokens or room, room)
    # streamed (the default), vLLM's last output of an n-sample request holds only the samples
    # that finished last; FINAL_ONLY makes it hold all n
    params.output_kind = RequestOutputKind.FINAL_ONLY
    outputs = (await engine.generate(context, params)).outputs
    if len(outputs) != n:
        raise RuntimeError(f"the engine returned {len(outputs)} samples for a request of n={n}")
    return outputs


def chosen_action(observation, output):
    """The admissible action the output names, or "" (an invalid action). A cut-off generation
    (max_tokens reached) is invalid, whatever it says."""
    if output.finish_reason == "length":
        return ""
    return parse_action(output.text, observation.admissible_actions) or ""


def output_logprobs(output):
    """The sampled tokens' log-probs, when the request asked for them."""
    if not output.logprobs:
        return None
    return [step[token].logprob for step, token in zip(output.logprobs, output.token_ids)]
