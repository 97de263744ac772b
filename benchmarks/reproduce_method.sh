#!/usr/bin/env bash
# One command from the official files to the method's checkpoints, their dev scores and a test-set submission, on
# CPU (the method table's rows d and e; README "The method table"). Resumable: a finished stage is skipped, an
# interrupted training resumes from its last complete checkpoint, prediction resumes from its cache.
#   bash benchmarks/reproduce_method.sh [DATA_DIR (default ../shared/data)] [OUT (default runs/method)]
set -euo pipefail
D=${1:-../shared/data}
OUT=${2:-runs/method}
TRAIN=$D/korean_language_rag_V1.0_train.json
DEV=$D/korean_language_rag_V1.0_dev.json
TEST=$D/korean_language_rag_V1.0_test.json
PRED=(--train_file "$TRAIN" --shot_method similar --num_shots 1 --max_new_tokens 160 --batch_size 16)
stage() { echo "[$(date -u +%H:%M:%S)] $*"; }
resume() { ls -d "$1"/checkpoint-* >/dev/null 2>&1 && echo "--resume_from_checkpoint last" || true; }

if [ ! -f "$OUT/sft/model.safetensors" ]; then
  stage "1/5 SFT warm start (about 20 min on 2 cores)"
  # shellcheck disable=SC2046
  malpyeong-grpo sft --config recipes/method/sft-gemma-270m-cpu.yaml --data_dir "$D" --output_dir "$OUT/sft" \
    $(resume "$OUT/sft")
else stage "1/5 SFT: done"; fi
if [ ! -f "$OUT/grpo/model.safetensors" ]; then
  stage "2/5 GRPO from the SFT checkpoint (about 30 min)"
  # shellcheck disable=SC2046
  malpyeong-grpo train --config recipes/method/grpo-gemma-270m-cpu.yaml --data_dir "$D" \
    --model_name_or_path "$OUT/sft" --output_dir "$OUT/grpo" $(resume "$OUT/grpo")
else stage "2/5 GRPO: done"; fi
for m in sft grpo; do
  stage "3-4/5 dev answers and scores of $m (about 8 min each)"
  malpyeong-grpo predict --model "$OUT/$m" --data "$DEV" "${PRED[@]}" --out "$OUT/dev_$m/predictions.json"
  malpyeong-grpo score --pred "$OUT/dev_$m/predictions.json" --gold "$DEV" --out "$OUT/dev_$m/scores.json"
done
# the submission model is chosen on the training hold-out, never on dev: GRPO's checkpoint when its hold-out score
# beats the SFT start's (both evaluated in the GRPO run: eval_on_start and every save), else the SFT checkpoint
BEST=$(python3 - "$OUT/grpo/log_history.json" <<'PY'
import json, sys
scores = [(r["step"], r["eval_task_score"]) for r in json.load(open(sys.argv[1])) if "eval_task_score" in r]
start = [s for step, s in scores if step == 0]
later = [s for step, s in scores if step > 0]
print("grpo" if later and start and max(later) > start[0] else "sft")
PY
)
stage "5/5 test-set submission from the checkpoint with the better hold-out score ($BEST; about 30 min)"
malpyeong-grpo predict --model "$OUT/$BEST" --data "$TEST" "${PRED[@]}" --out "$OUT/submission.json"
stage "done: $OUT/submission.json (model $OUT/$BEST; dev scores in $OUT/dev_sft, $OUT/dev_grpo)"
