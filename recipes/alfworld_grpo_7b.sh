#!/usr/bin/env bash
# ALFWorld, Qwen/Qwen2.5-7B-Instruct, 8 GPUs: GRPO baseline: step-wise GRPO (--advantage_estimator step_grpo: each step gets its trajectory's group-normalised return), same env, prompts and caps as 3SPO.
# Not yet timed here (no GPU run of the recipes so far): expect minutes per iteration; the 3SPO recipes cost more per iteration than GRPO (branching), see BENCHMARKS.md.
ENV_NAME=alfworld MODEL=Qwen/Qwen2.5-7B-Instruct GPUS=8 ESTIMATOR=step_grpo MODE=grpo exec bash "$(dirname "$0")/train.sh" "$@"
