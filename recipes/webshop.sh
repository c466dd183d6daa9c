#!/usr/bin/env bash
# WebShop training on OpenRLHF's vLLM + DeepSpeed pipeline, with the settings of the published
# WebShop results (GiGPO appendix, 3SPO scripts): 16 tasks x 8 per batch, actor lr 1e-6, PPO
# mini-batch 64, KL 0.01 as a loss (k3), temperature 1.0, prompt <= 4096 and response <= 512 tokens,
# at most 15 steps, history window 2, reward 10 x success.
#
# The recipe files set MODEL, GPUS, ESTIMATOR (3spo or group_norm) and MODE (3spo or multiturn).
# Data: with $WEBSHOP_DATA at the upstream JSON files,
#       openrlhf-3spo make-dataset webshop --split train --out "$DATA/train.jsonl"
#       openrlhf-3spo make-dataset webshop --split eval --out "$DATA/eval.jsonl"
# Extra arguments go to `openrlhf-3spo train`, e.g. --dry-run.
set -euo pipefail
: "${MODEL:?}" "${GPUS:?}" "${ESTIMATOR:?}" "${MODE:?}"
DATA=${DATA:-data/webshop}
OUT=${OUT:-runs/webshop_${ESTIMATOR}_$(basename "$MODEL")}
TP=${TP:-2}
AGENT=$(python -c "from openrlhf_3spo.agents import agent_file; print(agent_file('webshop', '$MODE'))")
export SPO3_MAX_STEPS=15 SPO3_HISTORY_LENGTH=2 SPO3_WEBSHOP_REWARD=success SPO3_ENV_WORKERS=${SPO3_ENV_WORKERS:-8}

openrlhf-3spo train \
  --actor.model_name_or_path "$MODEL" \
  --actor.num_nodes 1 --actor.num_gpus_per_node "$GPUS" --ref.num_nodes 1 --ref.num_gpus_per_node "$GPUS" \
  --train.colocate_all --vllm.num_engines $((GPUS / TP)) --vllm.tensor_parallel_size "$TP" \
  --vllm.gpu_memory_utilization 0.6 --vllm.enable_sleep --ds.enable_sleep --vllm.enable_prefix_caching \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable \
  --train.agent_func_path "$AGENT" \
  --algo.advantage.estimator "$ESTIMATOR" \
  --rollout.batch_size 16 --rollout.n_samples_per_prompt 8 --rollout.micro_batch_size 16 \
  --train.batch_size 64 --train.micro_batch_size 8 --train.max_epochs 1 --train.num_episodes 150 \
  --rollout.temperature 1.0 --eval.temperature 0.4 --rollout.max_new_tokens 512 --data.max_len 4608 \
  --actor.adam.lr 1e-6 --algo.kl.use_loss --algo.kl.init_coef 0.01 --algo.kl.estimator k3 \
  --data.prompt_dataset "$DATA/train.jsonl" --data.input_key input --data.label_key label \
  --eval.dataset "$DATA/eval.jsonl" --eval.steps 10 --eval.n_samples_per_prompt 1 \
  --ckpt.path "$OUT/ckpt" --ckpt.save_steps 10 --ckpt.load_enable \
  --logger.tensorboard_dir "$OUT/tensorboard" \
  "$@"
