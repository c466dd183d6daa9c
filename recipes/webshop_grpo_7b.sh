#!/usr/bin/env bash
# WebShop, Qwen/Qwen2.5-7B-Instruct, 8 GPUs: GRPO baseline: step-wise GRPO (trajectory group_norm advantage on every step), same env, prompts and caps as 3SPO.
# Not yet timed here (no GPU run of the recipes so far): expect minutes per iteration; the 3SPO recipes cost more per iteration than GRPO (branching), see BENCHMARKS.md.
ENV_NAME=webshop MODEL=Qwen/Qwen2.5-7B-Instruct GPUS=8 ESTIMATOR=group_norm MODE=grpo exec bash "$(dirname "$0")/train.sh" "$@"
