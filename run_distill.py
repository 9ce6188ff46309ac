#!/usr/bin/env python
"""Distil a fine-tuned teacher into a smaller student on a GLUE-style task.

Patient KD from a Hub teacher into its first 3 layers:

    python run_distill.py --method pkd --teacher_model_name_or_path textattack/bert-base-uncased-SST-2 \
        --task_name sst2 --student_layers 3 --output_dir students/pkd3-sst2 --num_train_epochs 4

Offline, from a teacher made with run_glue_teacher.py and the local GLUE copy:

    python run_distill.py --method kd --teacher_model_name_or_path teachers/minilm-sst2 \
        --task_name sst2 --data_dir ../shared/data/glue/SST-2 --student_layer_ids 0,2,4 --output_dir students/kd

Or with a config file: `python run_distill.py examples/pkd_sst2.yaml`. Every `TrainingArguments` flag works.
Writes the student and its tokenizer, `all_results.json`, `distillation_config.json` (the effective settings) and
`summary.md`, and prints the closing table: teacher vs student metric, parameters, size and latency.
"""

from dataclasses import dataclass, field

from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, set_seed
from transformers.utils import logging

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import (
    DataArguments,
    check_labels_match_task,
    check_output_dir,
    evaluate_model,
    load_data,
    model_summary_row,
    parse_arguments,
    summary_table,
    write_json_atomic,
    write_text_atomic,
)
from hf_distill.data import build_compute_metrics
from hf_distill.peakd import PTPArguments, run_ptp_stage
from hf_distill.students.factory import StudentArguments, build_student

logger = logging.get_logger("run_distill")


@dataclass
class TeacherArguments:
    teacher_model_name_or_path: str = field(metadata={"help": "The fine-tuned teacher: a Hub id or a local folder."})


def main(argv: list[str] | None = None) -> dict[str, float]:
    teacher_args, student_args, ptp_args, data_args, config = parse_arguments(
        (TeacherArguments, StudentArguments, PTPArguments, DataArguments, DistillationConfig), argv
    )
    if config.method != "peakd" and ptp_args.ptp_threshold is not None:
        raise ValueError(
            f"`ptp_threshold` belongs to PeaKD's PTP stage and has no effect with `--method {config.method}`. "
            "Drop it, or use `--method peakd`."
        )
    if config.should_log:
        logging.set_verbosity_info()
    check_output_dir(config.output_dir, data_args.overwrite_output_dir)
    set_seed(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(teacher_args.teacher_model_name_or_path)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_args.teacher_model_name_or_path)
    raw, tokenized, task = load_data(data_args, tokenizer, config.seed)
    check_labels_match_task(teacher.config, task, "teacher_model_name_or_path")
    student = build_student(student_args, config.method, teacher, tokenizer, task)
    effective = {
        **config.effective_distillation_config(),
        **vars(teacher_args),
        **vars(student_args),
        **(vars(ptp_args) if config.method == "peakd" else {}),
        "student_arch": student_args.resolved_arch(config.method),
        **vars(data_args),
        "task": task.name,
    }
    logger.info("Effective distillation configuration: %s", effective)
    write_json_atomic(f"{config.output_dir}/distillation_config.json", effective)

    collator = DataCollatorWithPadding(tokenizer)
    teacher_metrics = evaluate_model(teacher, config, tokenized["validation"], collator, task)
    logger.info("Teacher dev %s: %s", task.main_metric, teacher_metrics.get(f"eval_{task.main_metric}"))

    if config.method == "peakd" and ptp_args.ptp:
        run_ptp_stage(student, teacher, tokenized["train"], tokenized["validation"], task, config, ptp_args, collator)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=config,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=build_compute_metrics(task),
    )
    train_result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    student_metrics = trainer.evaluate()

    rows = [
        model_summary_row("teacher", teacher, teacher_metrics, task, tokenizer, config,
                          teacher_args.teacher_model_name_or_path),
        model_summary_row(f"student ({config.method})", trainer.model, student_metrics, task, tokenizer, config,
                          config.output_dir),
    ]
    table = summary_table(rows)
    metrics = {
        **train_result.metrics,
        **student_metrics,
        **{f"teacher_{key}": value for key, value in teacher_metrics.items()},
        "train_samples": len(raw["train"]),
        "summary": rows,
    }
    write_text_atomic(f"{config.output_dir}/summary.md", table + "\n")
    write_json_atomic(f"{config.output_dir}/all_results.json", metrics)
    print(f"\nDistillation results ({task.name}, {len(raw['validation'])} dev examples)\n\n{table}\n")
    if config.push_to_hub:
        trainer.push_to_hub(finetuned_from=teacher_args.teacher_model_name_or_path, tasks="text-classification")
    return metrics


if __name__ == "__main__":
    main()
