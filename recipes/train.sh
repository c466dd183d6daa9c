#!/usr/bin/env bash
# Training on OpenRLHF's vLLM + DeepSpeed pipeline with the settings of the published ALFWorld and
# WebShop results (GiGPO appendix, 3SPO scripts): 16 tasks x 8 per batch, actor lr 1e-6, KL 0.01 as
# a loss (k3), temperature 1.0 (0.4 in evaluation), responses <= 512 tokens, history window 2;
# ALFWorld: PPO mini-batch 256, prompts <= 2048 tokens, 50 steps, 400 iterations; WebShop: mini-batch
# 64, prompts <= 4096 tokens, 15 steps, reward 10 x success, 150 iterations. An iteration is one
# batch of 16 tasks: OpenRLHF runs num_episodes passes over max_samples tasks (ALFWorld 2 x 3200,
# WebShop 1 x 2400). The learning rate is constant, as in the published setup (OpenRLHF's default
# schedule would depend on n_samples_per_prompt).
#
# The recipe files set ENV_NAME (alfworld or webshop), MODEL, GPUS, ESTIMATOR (3spo, step_grpo or gigpo)
# and MODE (3spo, grpo, gigpo, or multiturn: OpenRLHF's growing-context mode, with group_norm). Data, made once (with $ALFWORLD_DATA or $WEBSHOP_DATA set):
#   openrlhf-3spo make-dataset alfworld --split train --out data/alfworld/train.jsonl
#   openrlhf-3spo make-dataset alfworld --split valid_unseen --out data/alfworld/eval.jsonl
#   openrlhf-3spo make-dataset webshop --split train --out data/webshop/train.jsonl
#   openrlhf-3spo make-dataset webshop --split eval --out data/webshop/eval.jsonl
# Extra arguments go to `openrlhf-3spo train`, e.g. --dry-run to check the configuration anywhere, or
# --cpu to run it on a CPU machine with a tiny model (README, "Checking a recipe on CPU"): one actor
# rank and one vLLM engine, without the GPU memory switches; the training settings stay as they are.
# `openrlhf-3spo recipes --copy DIR` writes these files out of an installed package.
set -euo pipefail
: "${ENV_NAME:?}" "${MODEL:?}" "${GPUS:?}" "${ESTIMATOR:?}" "${MODE:?}"
case "$ENV_NAME" in
  alfworld) STEPS=50 MINI_BATCH=256 MAX_LEN=2560 TASKS=3200 PASSES=2 ;;
  webshop) STEPS=15 MINI_BATCH=64 MAX_LEN=4608 TASKS=2400 PASSES=1 ;;
  *) echo "ENV_NAME must be alfworld or webshop" >&2; exit 2 ;;
esac
DATA=${DATA:-data/$ENV_NAME}
OUT=${OUT:-runs/${ENV_NAME}_${ESTIMATOR}_$(basename "$MODEL")}
TP=${TP:-2}
command -v openrlhf-3spo >/dev/null || { echo "openrlhf-3spo is not on PATH: pip install openrlhf-3spo (README)" >&2; exit 2; }
AGENT=$(openrlhf-3spo agent-file "$ENV_NAME" "$MODE")  # the installed file, with the package's own interpreter

if [[ " $* " == *" --cpu "* ]]; then
  LAYOUT=(--actor.num_gpus_per_node 1 --ref.num_gpus_per_node 1 --vllm.num_engines 1 --vllm.tensor_parallel_size 1)
else
  LAYOUT=(--actor.num_gpus_per_node "$GPUS" --ref.num_gpus_per_node "$GPUS" --vllm.num_engines $((GPUS / TP))
          --vllm.tensor_parallel_size "$TP" --vllm.enable_sleep --ds.enable_sleep)
fi

openrlhf-3spo train \
  --actor.model_name_or_path "$MODEL" \
  --actor.num_nodes 1 --ref.num_nodes 1 "${LAYOUT[@]}" \
  --train.colocate_all --vllm.gpu_memory_utilization 0.6 --vllm.enable_prefix_caching \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable \
  --train.agent_func_path "$AGENT" \
  --spo3.max_steps "$STEPS" --spo3.history_length 2 --spo3.webshop_reward success --spo3.env_workers "${ENV_WORKERS:-16}" \
  --algo.advantage.estimator "$ESTIMATOR" \
  --rollout.batch_size 16 --rollout.n_samples_per_prompt 8 --rollout.micro_batch_size 16 \
  --train.batch_size "$MINI_BATCH" --train.micro_batch_size 8 --train.max_epochs 1 --train.num_episodes "$PASSES" --data.max_samples "$TASKS" \
  --rollout.temperature 1.0 --eval.temperature 0.4 --rollout.max_new_tokens 512 --data.max_len "$MAX_LEN" \
  --actor.adam.lr 1e-6 --actor.lr_scheduler constant --actor.lr_warmup_ratio 0 --algo.kl.use_loss --algo.kl.init_coef 0.01 --algo.kl.estimator k3 \
  --data.prompt_dataset "$DATA/train.jsonl" --data.input_key input --data.label_key label \
  --eval.dataset "$DATA/eval.jsonl" --eval.steps 10 --eval.n_samples_per_prompt 1 \
  --ckpt.path "$OUT/ckpt" --ckpt.save_steps 10 --ckpt.load_enable --ckpt.output_dir "$OUT/model" \
  --logger.tensorboard_dir "$OUT/tensorboard" \
  "$@"
