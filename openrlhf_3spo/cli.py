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


def build_parser():
    parser = argparse.ArgumentParser(prog="openrlhf-3spo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the CPU run: tabular 3SPO against GRPO on combination-lock corridors")
    demo.add_argument("--out", default="runs/demo", help="output folder (metrics.jsonl, curves.png, summary.json)")
    demo.add_argument("--iterations", type=int, default=40)
    demo.add_argument("--tasks", type=int, default=16)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("iterations", "tasks"):
        if getattr(args, name, 1) < 1:
            sys.exit(f"openrlhf-3spo: error: --{name} must be >= 1")
    args.func(args)


if __name__ == "__main__":
    main()
