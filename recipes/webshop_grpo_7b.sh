#!/usr/bin/env bash
# WebShop, Qwen/Qwen2.5-7B-Instruct, 8 GPUs: GRPO baseline: OpenRLHF's group_norm on trajectory rewards, same env and prompts.
ENV_NAME=webshop MODEL=Qwen/Qwen2.5-7B-Instruct GPUS=8 ESTIMATOR=group_norm MODE=multiturn exec bash "$(dirname "$0")/train.sh" "$@"
