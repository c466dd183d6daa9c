"""What 3SPO costs on OpenRLHF's real trainer: 3SPO against step-wise GRPO (step_grpo), through
`openrlhf-3spo train --cpu` with the same tiny model, tasks and budget (2 tasks x 4 trajectories per
iteration, 3 env steps per episode, 16-token answers, 2 iterations).

    python benchmarks/trainer.py [--out DIR]

Each iteration is broken down as OpenRLHF times it: generation (vLLM and the env steps between its
calls), experience (reference and actor log-probs), training, and the weight sync to vLLM. The
measured iteration is the second (the first also warms vLLM up). The cost is the time per trained
token (action tokens of all step samples), compared as a ratio. Ends with one JSON line.
"""

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.demo.smollm2 import write_tiny_model
from openrlhf_3spo.envs import alfworld
from openrlhf_3spo.io import atomic_write_jsonl

PHASES = {"generation": "timing/generation", "experience": "timing/make_experience", "training": "timing/ppo_train",
          "weight_sync": "timing/broadcast"}


def run(estimator, mode, model, data, out):
    command = [
        os.path.join(os.path.dirname(sys.executable), "openrlhf-3spo"), "train", "--cpu",
        "--actor.model_name_or_path", model, "--train.agent_func_path", agent_file("alfworld", mode),
        "--advantage_estimator", estimator, "--actor.num_gpus_per_node", "1", "--ref.num_gpus_per_node", "1",
        "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "1", "--train.colocate_all",
        "--rollout.batch_size", "2", "--rollout.n_samples_per_prompt", "4", "--rollout.micro_batch_size", "4",
        "--train.batch_size", "8", "--train.micro_batch_size", "4", "--train.num_episodes", "1",
        "--data.max_samples", "4", "--spo3.max_steps", "3", "--spo3.g_max", "4", "--spo3.env_workers", "2",
        "--rollout.max_new_tokens", "16", "--algo.kl.use_loss", "--algo.kl.init_coef", "0.01",
        "--data.prompt_dataset", data, "--data.input_key", "input", "--data.label_key", "label",
        "--ckpt.path", os.path.join(out, "ckpt"), "--ckpt.output_dir", os.path.join(out, "model"),
    ]
    print(f"[trainer] {estimator}: 2 iterations through openrlhf-3spo train --cpu ...", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=out, timeout=1800)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"{estimator} run failed:\n{output[-4000:]}")
    steps = {int(s): ast.literal_eval(re.sub(r"\bnan\b", "None", status))
             for s, status in re.findall(r"Global step (\d+): (\{.*\})", output)}
    status = steps[2]
    samples = status["rollout/num_samples"]
    tokens = samples * status["rollout/response_length_mean"]
    seconds = {phase: status[key] for phase, key in PHASES.items()}
    total = sum(seconds.values())
    return {"trained_samples": samples, "trained_tokens": tokens, "seconds": seconds, "iteration_seconds": total,
            "ms_per_trained_token": 1000 * total / tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="trainer-bench-")
    model = write_tiny_model(os.path.join(out, "model"))
    data = os.path.join(out, "train.jsonl")
    atomic_write_jsonl(data, alfworld.dataset_rows("train", "shipped"))
    results = {}
    for estimator, mode in (("step_grpo", "grpo"), ("3spo", "3spo")):
        os.makedirs(os.path.join(out, estimator), exist_ok=True)
        results[estimator] = run(estimator, mode, model, data, os.path.join(out, estimator))
        r = results[estimator]
        print(f"[trainer] {estimator}: {r['trained_samples']:.0f} step samples, {r['trained_tokens']:.0f} trained tokens, "
              + ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items())
              + f"; {r['ms_per_trained_token']:.2f} ms per trained token")
    ratio = results["3spo"]["ms_per_trained_token"] / results["step_grpo"]["ms_per_trained_token"]
    print(json.dumps({"benchmark": "trainer", **results, "3spo_over_step_grpo_per_trained_token": ratio}))


if __name__ == "__main__":
    main()
