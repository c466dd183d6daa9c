"""The `openrlhf-3spo` command."""

import argparse
import json
import sys


def _demo(args):
    from openrlhf_3spo.demo.corridor import CorridorConfig, run

    cfg = CorridorConfig(iterations=args.iterations, tasks=args.tasks, seed=args.seed)
    summary = run(cfg, args.out)
    print(f"[demo] metrics, plot and summary written to {args.out}/")
    print(json.dumps(summary))


def _make_dataset(args):
    from openrlhf_3spo.envs import alfworld
    from openrlhf_3spo.io import atomic_write_jsonl

    if args.env == "alfworld":
        task_types = args.task_types.split(",") if args.task_types else alfworld.TASK_TYPES
        rows = alfworld.dataset_rows(args.split, args.data, task_types)
    else:
        from openrlhf_3spo.envs import webshop

        rows = webshop.dataset_rows(args.split, args.data, args.eval_goals)
    atomic_write_jsonl(args.out, rows)
    print(f"[make-dataset] {len(rows)} {args.env} {args.split} tasks written to {args.out}")


def build_parser():
    parser = argparse.ArgumentParser(prog="openrlhf-3spo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="OpenRLHF PPO training (train_ppo_ray flags) with --advantage_estimator 3spo")
    demo = commands.add_parser("demo", help="the CPU run: tabular 3SPO against GRPO on combination-lock corridors")
    demo.add_argument("--out", default="runs/demo", help="output folder (metrics.jsonl, curves.png, summary.json)")
    demo.add_argument("--iterations", type=int, default=40)
    demo.add_argument("--tasks", type=int, default=16)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    dataset = commands.add_parser("make-dataset", help="write an OpenRLHF prompt dataset (JSONL) of env tasks")
    dataset.add_argument("env", choices=["alfworld", "webshop"])
    dataset.add_argument("--split", required=True, help="alfworld: train, valid_seen, valid_unseen; webshop: train, eval")
    dataset.add_argument("--data", default=None, help='data folder (default $ALFWORLD_DATA / $WEBSHOP_DATA), or "shipped"')
    dataset.add_argument("--eval-goals", type=int, default=500, help="webshop: goals [0, N) are eval, the rest train")
    dataset.add_argument("--task-types", default=None, help="comma-separated ALFWorld task types (default: all six)")
    dataset.add_argument("--out", required=True, help="output .jsonl file")
    dataset.set_defaults(func=_make_dataset)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":  # every flag of OpenRLHF's train_ppo_ray, plus --spo3.*
        from openrlhf_3spo.openrlhf.train import main as train

        return train(argv[1:])
    args = build_parser().parse_args(argv)
    for name in ("iterations", "tasks"):
        if getattr(args, name, 1) < 1:
            sys.exit(f"openrlhf-3spo: error: --{name} must be >= 1")
    try:
        args.func(args)
    except ValueError as error:  # bad input: one clear line, no traceback
        sys.exit(f"openrlhf-3spo: error: {error}")


if __name__ == "__main__":
    main()
