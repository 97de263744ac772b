#!/usr/bin/env bash
# One command from the official files to the method's best checkpoint, its dev scores and a test-set submission, on
# CPU: the method table's rows g (longer SFT) and h (GRPO from it); README "The method table". Resumable: a finished
# stage is skipped, an interrupted training resumes from its last complete checkpoint, prediction from its cache.
#   bash benchmarks/reproduce_method.sh [DATA_DIR (default ../shared/data)] [OUT (default runs/method)]
# Measured on a fresh clone on the 2-core CPU box (docs/method.md, benchmarks/results/reproduce_method.json): SFT 20 min,
# GRPO 31 min, each dev prediction 6 min, the 498 test items 20.5 min; 84 min in all.
set -euo pipefail
D=${1:-../shared/data}
OUT=${2:-runs/method}
TRAIN=$D/korean_language_rag_V1.0_train.json
DEV=$D/korean_language_rag_V1.0_dev.json
TEST=$D/korean_language_rag_V1.0_test.json
PRED=(--train_file "$TRAIN" --shot_method similar --num_shots 1 --max_new_tokens 160 --batch_size 16)
stage() { echo "[$(date -u +%H:%M:%S)] $*"; }
resume() { ls -d "$1"/checkpoint-* >/dev/null 2>&1 && echo "--resume_from_checkpoint last" || true; }

if [ ! -f "$OUT/sft-long/model.safetensors" ]; then
  stage "1/5 SFT warm start, row g (about 20 min on 2 cores)"
  # shellcheck disable=SC2046
  malpyeong-grpo sft --config recipes/method/sft-long-gemma-270m-cpu.yaml --data_dir "$D" \
    --output_dir "$OUT/sft-long" $(resume "$OUT/sft-long")
else stage "1/5 SFT: done"; fi
if [ ! -f "$OUT/grpo-long/model.safetensors" ]; then
  stage "2/5 GRPO from the SFT checkpoint, row h (about 30 min)"
  # shellcheck disable=SC2046
  malpyeong-grpo train --config recipes/method/grpo-long-gemma-270m-cpu.yaml --data_dir "$D" \
    --model_name_or_path "$OUT/sft-long" --output_dir "$OUT/grpo-long" $(resume "$OUT/grpo-long")
else stage "2/5 GRPO: done"; fi
for m in sft-long grpo-long; do
  stage "3-4/5 dev answers and scores of $m (about 6 min each)"
  malpyeong-grpo predict --model "$OUT/$m" --data "$DEV" "${PRED[@]}" --out "$OUT/dev_$m/predictions.json"
  malpyeong-grpo score --pred "$OUT/dev_$m/predictions.json" --gold "$DEV" --out "$OUT/dev_$m/scores.json"
done
# the submission model is chosen on the training hold-out, never on dev: GRPO's checkpoint when its hold-out score
# beats the SFT start's (both evaluated in the GRPO run: eval_on_start and every save), else the SFT checkpoint
BEST=$(python3 - "$OUT/grpo-long/log_history.json" <<'PY'
import json, sys
scores = [(r["step"], r["eval_task_score"]) for r in json.load(open(sys.argv[1])) if "eval_task_score" in r]
start = [s for step, s in scores if step == 0]
later = [s for step, s in scores if step > 0]
print("grpo-long" if later and start and max(later) > start[0] else "sft-long")
PY
)
stage "5/5 test-set submission from the checkpoint with the better hold-out score ($BEST; about 20 min)"
malpyeong-grpo predict --model "$OUT/$BEST" --data "$TEST" "${PRED[@]}" --out "$OUT/submission.json"
stage "done: $OUT/submission.json (model $OUT/$BEST; dev scores in $OUT/dev_sft-long, $OUT/dev_grpo-long)"
