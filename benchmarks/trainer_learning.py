"""Does OpenRLHF's real trainer learn? `openrlhf-3spo train --cpu` on the corridor, per estimator.

    python benchmarks/trainer_learning.py --out runs/trainer_learning

Every estimator starts from the same tiny random model (`openrlhf-3spo tiny-model`) and trains for
--steps global steps on one-lock corridor tasks (`envs/corridor.py`: press the secret's buttons in
order), --tasks-per-step tasks a step, --trajectories trajectories each, every answer constrained to
an admissible action (`--spo3.decoding constrained`). Success is measured on --eval-tasks sampled
episodes (temperature 1) by the agents' own eval episode: at the start by `openrlhf-3spo evaluate`
on the start model (OpenRLHF evaluates only after a step), then by OpenRLHF's eval every
--eval-every steps. Writes curves.png and results.json to --out, and ends with one JSON line: per
estimator, success at the start, at each eval and at the end, steps and seconds.
"""

import argparse
import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
import time

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.envs.corridor import dataset_rows
from openrlhf_3spo.io import atomic_write_jsonl, atomic_write_text
from openrlhf_3spo.plugin import STEP_ESTIMATORS

# agent mode -> (agent mode, --advantage_estimator)
ESTIMATORS = {mode: (mode, estimator) for estimator, mode in STEP_ESTIMATORS.items()}


@dataclasses.dataclass(frozen=True)
class Args:
    estimators: str = dataclasses.field(default="3spo,grpo,gigpo", metadata={"help": f"comma-separated, of {', '.join(ESTIMATORS)}"})
    steps: int = dataclasses.field(default=32, metadata={"help": "global steps per estimator"})
    eval_every: int = dataclasses.field(default=4, metadata={"help": "OpenRLHF's --eval.steps (a divisor of --steps)"})
    eval_tasks: int = dataclasses.field(default=64, metadata={"help": "episodes per evaluation"})
    tasks_per_step: int = dataclasses.field(default=4, metadata={"help": "--rollout.batch_size"})
    trajectories: int = dataclasses.field(default=8, metadata={"help": "--rollout.n_samples_per_prompt: each task's budget"})
    secret: str = dataclasses.field(default="abc", metadata={"help": "the corridor's lock: one button per cell"})
    max_steps: int = dataclasses.field(default=6, metadata={"help": "--spo3.max_steps: env steps per episode"})
    lr: float = dataclasses.field(default=1e-2, metadata={"help": "--actor.adam.lr"})
    g_max: int = dataclasses.field(default=8, metadata={"help": "--spo3.g_max"})
    # eq. 1's scale: with alpha 50, a state seen on one won trajectory scores ~0 (n = 1, untrained)
    alpha: float = dataclasses.field(default=0.25, metadata={"help": "--spo3.alpha"})
    # the write-off rule truncates every path through a written-off cell, and truncated paths are
    # never recorded: on three shared cells it ends all learning (BENCHMARKS.md)
    xi: float = dataclasses.field(default=1e6, metadata={"help": "--spo3.xi (1e6: no write-off)"})
    adv_norm: str = dataclasses.field(default="mean_std", metadata={"help": "--spo3.adv_norm"})
    seed: int = dataclasses.field(default=0, metadata={"help": "the start model's and the trainer's seed"})

    def check(self):
        unknown = set(self.names()) - set(ESTIMATORS)
        if unknown:
            raise ValueError(f"--estimators: unknown {', '.join(sorted(unknown))}; known: {', '.join(ESTIMATORS)}")
        if self.steps < 1 or self.eval_every < 1 or self.steps % self.eval_every:
            raise ValueError(f"--eval-every ({self.eval_every}) must divide --steps ({self.steps}), both >= 1")
        if min(self.eval_tasks, self.tasks_per_step, self.trajectories, self.max_steps) < 1:
            raise ValueError("--eval-tasks, --tasks-per-step, --trajectories and --max-steps must be >= 1")
        return self

    def names(self):
        return [name.strip() for name in self.estimators.split(",") if name.strip()]


def _openrlhf_3spo():
    return os.path.join(os.path.dirname(sys.executable), "openrlhf-3spo")


def _logged(pattern, output):
    """{global step: the dict OpenRLHF logged} for each match of `pattern` (step, dict)."""
    return {int(step): ast.literal_eval(re.sub(r"\bnan\b", "None", text)) for step, text in re.findall(pattern, output)}


def _call(command, log, env):
    """Runs a command, its output written to `log` as it comes (`tail -f` it); a failure raises
    with the output's tail. -> the output."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f:
        try:  # far beyond any run here: a hung run fails, naming its log
            returncode = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, text=True, env=env, timeout=3600).returncode
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{os.path.basename(command[0])} {command[1]} ran over an hour; see {log}") from None
    with open(log) as f:
        output = f.read()
    if returncode != 0:
        raise RuntimeError(f"{os.path.basename(command[0])} {command[1]} failed ({returncode}); see {log}:\n{output[-4000:]}")
    return output


def prepare(args, out):
    """The start model and the datasets, under `out`. -> (model folder, train file, eval file)."""
    model, train, evaluation = os.path.join(out, "start_model"), os.path.join(out, "train.jsonl"), os.path.join(out, "eval.jsonl")
    if not os.path.exists(os.path.join(model, "config.json")):
        _call([_openrlhf_3spo(), "tiny-model", "--out", model, "--seed", str(args.seed)], os.path.join(out, "tiny_model.log"), os.environ)
    atomic_write_jsonl(train, dataset_rows(args.steps * args.tasks_per_step, args.secret))
    atomic_write_jsonl(evaluation, dataset_rows(args.eval_tasks, args.secret))
    return model, train, evaluation


def start_success(args, model, evaluation, out):
    """The start model's success on the eval set: the agents' eval episode, as OpenRLHF's eval runs it."""
    saved = os.path.join(out, "start_eval.json")
    _call([
        _openrlhf_3spo(), "evaluate", "--model", model, "--env", "corridor", "--dataset", evaluation,
        "--decoding", "constrained", "--temperature", "1.0", "--max-tokens", "48", "--max-steps", str(args.max_steps),
        "--out", saved,
    ], os.path.join(out, "start_eval.log"), {"VLLM_CPU_KVCACHE_SPACE": "1", **os.environ})  # as --cpu sets it for training
    with open(saved) as f:
        return json.load(f)["table"]["All"] / 100


def train(args, estimator, model, data, out, agent=None):
    """One training run. -> {"evals": {step: success}, "rollout_success": {step: ...}, "seconds"};
    `agent`: another agent file for the same estimator (the tests' sign-flipped one)."""
    mode, advantage_estimator = ESTIMATORS[estimator]
    train_file, eval_file = data
    run_dir = os.path.join(out, estimator)
    command = [
        _openrlhf_3spo(), "train", "--cpu", "--train.seed", str(args.seed),
        "--actor.model_name_or_path", model, "--train.agent_func_path", agent or agent_file("corridor", mode),
        "--advantage_estimator", advantage_estimator,
        "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "1", "--ref.num_nodes", "1", "--ref.num_gpus_per_node", "1",
        "--vllm.num_engines", "1", "--vllm.tensor_parallel_size", "1", "--train.colocate_all",
        "--ds.zero_stage", "3", "--ds.param_dtype", "bf16", "--algo.kl.init_coef", "0",
        "--data.prompt_dataset", train_file, "--data.input_key", "input", "--data.label_key", "label",
        "--data.max_samples", str(max(args.steps * args.tasks_per_step, args.eval_tasks)),
        "--eval.dataset", eval_file, "--eval.steps", str(args.eval_every), "--eval.n_samples_per_prompt", "1",
        "--eval.temperature", "1.0",
        "--rollout.batch_size", str(args.tasks_per_step), "--rollout.n_samples_per_prompt", str(args.trajectories),
        "--rollout.micro_batch_size", "8", "--rollout.temperature", "1.0", "--rollout.max_new_tokens", "48",
        "--train.batch_size", str(args.tasks_per_step * args.trajectories), "--train.micro_batch_size", "8",
        "--train.num_episodes", "1",
        "--spo3.decoding", "constrained", "--spo3.max_steps", str(args.max_steps), "--spo3.env_workers", "2",
        "--spo3.g_max", str(args.g_max), "--spo3.alpha", str(args.alpha), "--spo3.xi", str(args.xi),
        "--spo3.adv_norm", args.adv_norm,
        "--actor.adam.lr", str(args.lr), "--actor.lr_scheduler", "constant", "--actor.lr_warmup_ratio", "0",
        "--ckpt.save_steps", "-1", "--ckpt.path", os.path.join(run_dir, "ckpt"), "--ckpt.output_dir", os.path.join(run_dir, "model"),
    ]
    # the trainer's vLLM runs as users run it, whatever a test session set
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    started = time.time()
    output = _call(command, os.path.join(run_dir, "train.log"), env)
    evals = _logged(r"global_step (\d+), eval_metrics: (\{.*\})", output)
    steps = _logged(r"Global step (\d+): (\{.*\})", output)
    if len(steps) != args.steps:
        raise RuntimeError(f"{estimator}: {len(steps)} global steps logged, {args.steps} expected; see {run_dir}/train.log")
    return {
        "evals": {step: logs["eval_default_pass1"] for step, logs in sorted(evals.items())},
        "rollout_success": {step: logs.get("spo3/success_rate") for step, logs in sorted(steps.items())},
        "seconds": round(time.time() - started, 1),
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for estimator, result in results.items():
        steps = [0] + [int(s) for s in result["evals"]]
        ax.plot(steps, [result["start"]] + list(result["evals"].values()), marker="o", label=estimator)
    ax.set_xlabel("global step")
    ax.set_ylabel("eval success (sampled, T=1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("OpenRLHF's trainer on CPU: tiny model, corridor")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=120)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, help=f.metadata["help"])
    parser.add_argument("--out", default="runs/trainer_learning", help="output folder")
    namespace = parser.parse_args(argv)
    try:
        args = Args(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(Args)}).check()
    except ValueError as error:
        sys.exit(f"trainer_learning.py: error: {error}")
    out = namespace.out
    os.makedirs(out, exist_ok=True)
    model, train_file, eval_file = prepare(args, out)
    start = start_success(args, model, eval_file, out)
    print(f"[trainer_learning] start model: success {start:.3f} on {args.eval_tasks} episodes", flush=True)
    results = {}
    for estimator in args.names():
        print(f"[trainer_learning] {estimator}: training {args.steps} steps, log in {out}/{estimator}/train.log", flush=True)
        run = train(args, estimator, model, (train_file, eval_file), out)
        end = run["evals"][args.steps]
        results[estimator] = {"start": start, "evals": run["evals"], "end": end, "gain": round(end - start, 4),
                              "steps": args.steps, "seconds": run["seconds"], "rollout_success": run["rollout_success"]}
        print(f"[trainer_learning] {estimator}: {start:.3f} -> {end:.3f} in {args.steps} steps, {run['seconds']:.0f} s", flush=True)
        plot(results, os.path.join(out, "curves.png"))
    summary = {"benchmark": "trainer_learning", "settings": dataclasses.asdict(args), "estimators": results}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
