#!/usr/bin/env bash
# WebShop, Qwen/Qwen2.5-1.5B-Instruct, 2 x H100: GiGPO baseline: the GRPO recipe's episodes, each step with the episode advantage plus the anchor-state step advantage (gamma 0.95, mean_norm), same env, prompts and caps as 3SPO.
# Not yet timed here (no GPU run of the recipes so far): expect minutes per iteration; GiGPO costs what GRPO costs; the 3SPO recipes cost more (branching); see BENCHMARKS.md.
ENV_NAME=webshop MODEL=Qwen/Qwen2.5-1.5B-Instruct GPUS=2 ESTIMATOR=gigpo MODE=gigpo exec bash "$(dirname "$0")/train.sh" "$@"
