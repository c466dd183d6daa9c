#!/usr/bin/env bash
# WebShop, Qwen/Qwen2.5-1.5B-Instruct, 2 x H100: GRPO baseline: OpenRLHF's group_norm on trajectory rewards, same env and prompts.
ENV_NAME=webshop MODEL=Qwen/Qwen2.5-1.5B-Instruct GPUS=2 ESTIMATOR=group_norm MODE=multiturn exec bash "$(dirname "$0")/train.sh" "$@"
