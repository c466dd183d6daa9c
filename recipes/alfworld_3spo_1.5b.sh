#!/usr/bin/env bash
# ALFWorld, Qwen/Qwen2.5-1.5B-Instruct, 2 x H100: 3SPO (alpha 50, xi 10, zeta 0.1, omega_k 0.1, G_max 8: the defaults).
# Not yet timed here (no GPU run of the recipes so far): expect minutes per iteration; the 3SPO recipes cost more per iteration than GRPO (branching), see BENCHMARKS.md.
ENV_NAME=alfworld MODEL=Qwen/Qwen2.5-1.5B-Instruct GPUS=2 ESTIMATOR=3spo MODE=3spo exec bash "$(dirname "$0")/train.sh" "$@"
