#!/usr/bin/env python
"""Distil a fine-tuned teacher into a smaller student on a GLUE-style task.

Patient KD from a Hub teacher into its first 3 layers:

    python run_distill.py --method pkd --teacher_model_name_or_path textattack/bert-base-uncased-SST-2 \
        --task_name sst2 --student_layers 3 --output_dir students/pkd3-sst2 --num_train_epochs 4

Offline, from a teacher made with run_glue_teacher.py and the local GLUE copy:

    python run_distill.py --method kd --teacher_model_name_or_path teachers/minilm-sst2 \
        --task_name sst2 --data_dir ../shared/data/glue/SST-2 --student_layer_ids 0,2,4 --output_dir students/kd

TinyBERT task distillation (stage 1 into <output_dir>/_stage1, then stage 2) into a fresh, narrower 3-layer student:

    python run_distill.py --method tinybert --teacher_model_name_or_path teachers/minilm-sst2 \
        --task_name sst2 --data_dir ../shared/data/glue/SST-2 --output_dir students/tinybert \
        --student_config '{"num_hidden_layers": 3, "hidden_size": 192, "intermediate_size": 768}'

Or with a config file: `python run_distill.py examples/pkd_sst2.yaml`. Every `TrainingArguments` flag works.
Writes the student and its tokenizer, `train_results.json`/`eval_results.json`/`teacher_results.json` and their union
`all_results.json` (as transformers' run_glue.py does), `distillation_config.json` (the effective settings),
`summary.md` and the model card, prints the closing table (teacher vs student metric, parameters, size and latency),
and writes `run_complete.json` last. Under `torchrun` only the main process writes and prints. `--export onnx
[--quantize dynamic]` also writes `onnx/` (`hf_distill.export`) and `onnx_results.json`, and adds the ONNX rows.
"""

from dataclasses import dataclass, field

from transformers import set_seed
from transformers.utils import logging

from hf_distill import DistillationConfig
from hf_distill.cli import (
    DataArguments,
    check_labels_match_task,
    check_output_dir,
    check_same_tokenizer,
    evaluate_ensemble,
    evaluate_model,
    load_data,
    local_dataset,
    make_collator,
    model_summary_row,
    onnx_summary_rows,
    parse_arguments,
    report_metrics,
    setup_logging,
    summary_table,
    training_row_counts,
    write_completion_marker,
)
from hf_distill.data import build_compute_metrics
from hf_distill.ensemble import TeacherEnsemble
from hf_distill.export import ExportArguments, check_export_arguments
from hf_distill.guards import (
    check_max_seq_length,
    check_resume_checkpoint,
    check_training_arguments,
    load_pretrained,
    save_final_model,
)
from hf_distill.io import write_json_atomic, write_text_atomic
from hf_distill.methods import get_method, load_method_plugins
from hf_distill.peft_utils import (
    StudentPeftArguments,
    add_student_lora,
    is_peft_adapter,
    load_teacher,
    load_teacher_tokenizer,
    merge_peft_model,
)
from hf_distill.pipeline import check_method_arguments, method_argument_classes, prepare_student, train_student
from hf_distill.students.factory import (
    StudentArguments,
    build_student,
    is_cross_tokenizer,
    load_student_tokenizer,
)
from hf_distill.teacher_cache import cast_teacher

logger = logging.get_logger("run_distill")


@dataclass
class TeacherArguments:
    _argument_group_name = "Teacher"

    teacher_model_name_or_path: list[str] = field(
        metadata={
            "help": "The fine-tuned teacher: a Hub id or a local folder, or a LoRA adapter of one "
            "(run_glue_teacher.py --use_peft), which is merged into its base. Several (A B C): an ensemble, whose "
            "target is the average of the teachers' probabilities at the temperature (see README).",
            "nargs": "+",
        }
    )
    teacher_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "The teacher's Hub id, recorded as `base_model` in the student's model card when "
            "`teacher_model_name_or_path` is a local folder."
        },
    )

    def __post_init__(self):
        # A config file may give one teacher as a plain string.
        if isinstance(self.teacher_model_name_or_path, str):
            self.teacher_model_name_or_path = [self.teacher_model_name_or_path]


def argument_classes() -> tuple[type, ...]:
    """What the command line or a config file fills: the registered methods' own argument groups (PeaKD's PTP, and
    those of plug-ins once loaded) sit after the student's."""
    return (TeacherArguments, StudentArguments, *method_argument_classes(), StudentPeftArguments, DataArguments,
            ExportArguments, DistillationConfig)


# The built-in methods' arguments (tests parse examples/*.yaml with these).
ARGUMENT_CLASSES = argument_classes()


def main(argv: list[str] | None = None) -> dict[str, float]:
    load_method_plugins()  # methods registered outside the package accept `--method <name>` and their arguments
    classes = argument_classes()
    parsed = dict(zip(classes, parse_arguments(classes, argv), strict=True))
    teacher_args, student_args, peft_args, data_args, export_args, config = (
        parsed[cls] for cls in (TeacherArguments, StudentArguments, StudentPeftArguments, DataArguments,
                                ExportArguments, DistillationConfig)
    )
    method = get_method(config.method)
    method_args = parsed.get(method.arguments)
    check_method_arguments(config.method, list(parsed.values()))
    setup_logging(config)
    check_output_dir(config.output_dir, data_args.overwrite_output_dir)
    check_resume_checkpoint(config.resume_from_checkpoint)
    check_training_arguments(config)
    check_export_arguments(export_args, adapter_only=peft_args.student_peft and not peft_args.merge_student_peft)
    set_seed(config.seed)

    teacher_paths = teacher_args.teacher_model_name_or_path
    tokenizer = load_pretrained(load_teacher_tokenizer, teacher_paths[0], "teacher_model_name_or_path")
    teachers = [load_pretrained(load_teacher, path, "teacher_model_name_or_path") for path in teacher_paths]
    check_same_tokenizer(tokenizer, teacher_paths)
    for member in teachers:
        check_max_seq_length(data_args.max_seq_length, member.config, "the teacher (`teacher_model_name_or_path`)")
    # Several teachers distil as one (`TeacherEnsemble`); intermediate terms and the student's layers use one of them.
    teacher = teachers[0] if len(teachers) == 1 else TeacherEnsemble(
        teachers, temperature=config.temperature or 1.0, intermediate_teacher=config.intermediate_teacher)
    intermediate = getattr(teacher, "intermediate", teacher)
    student_tokenizer = load_student_tokenizer(student_args, tokenizer)
    # A student with a tokenizer of its own reads the same rows tokenized its way (`student_input_ids`, ...).
    own_tokenizer = student_tokenizer if is_cross_tokenizer(student_tokenizer, tokenizer) else None
    # The main process fills the datasets cache first; the others then read it (run_glue.py's pattern).
    with config.main_process_first(desc="loading and tokenizing the data"):
        raw, tokenized, task = load_data(data_args, tokenizer, config.seed, own_tokenizer)
    method.check_task(task, method_args)
    for member in teachers:
        check_labels_match_task(member, task, "teacher_model_name_or_path")
    student = build_student(student_args, config.method, intermediate, tokenizer, task, student_tokenizer)
    # A student with its own tokenizer reads rows truncated at `student_max_seq_length` (load_data refuses it else).
    student_length_argument = "student_max_seq_length" if data_args.student_max_seq_length else "max_seq_length"
    student_max_seq_length = getattr(data_args, student_length_argument)
    check_max_seq_length(student_max_seq_length, student.config, "the student", student_length_argument)
    effective = {
        **config.effective_distillation_config(),
        **vars(teacher_args),
        **vars(student_args),
        **method.effective_settings(config),
        **(vars(method_args) if method_args is not None else {}),
        **(vars(peft_args) if peft_args.student_peft else {}),
        "student_arch": student_args.resolved_arch(config.method),
        **vars(data_args),
        **(vars(export_args) if export_args.export else {}),
        "task": task.name,
    }
    logger.info("Effective distillation configuration: %s", effective)
    if config.should_save:
        write_json_atomic(f"{config.output_dir}/distillation_config.json", effective)

    collator = make_collator(tokenizer, data_args, task, own_tokenizer)
    # From here on the teacher runs as it distils (`teacher_dtype`); the student was built from its loaded weights.
    cast_teacher(teacher, config.teacher_torch_dtype)
    if len(teachers) > 1:
        teacher_metrics, member_metrics = evaluate_ensemble(teacher, config, tokenized["validation"], collator, task)
    else:
        teacher_metrics, member_metrics = evaluate_model(teacher, config, tokenized["validation"], collator, task), []
    logger.info("Teacher dev %s: %s", task.main_metric, teacher_metrics.get(f"eval_{task.main_metric}"))

    student = prepare_student(student, teacher, config, method_args, task, tokenized["train"], tokenized["validation"],
                              collator)
    student = add_student_lora(student, peft_args)
    trainer_kwargs = dict(
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=student_tokenizer,  # saved with the student
        data_collator=collator,
        compute_metrics=build_compute_metrics(task),
    )
    trainer, train_result = train_student(student, teacher, config, **trainer_kwargs)
    if peft_args.student_peft and peft_args.merge_student_peft:
        trainer.model = trainer.model_wrapped = merge_peft_model(trainer.model)
    save_final_model(trainer)
    row_counts = training_row_counts(raw["train"])
    train_metrics = {**train_result.metrics, "train_samples": len(raw["train"]),
                     **{f"train_{kind}_samples": count for kind, count in row_counts.items()}}
    report_metrics(trainer, "train", train_metrics)
    trainer.save_state()

    student_metrics = {**trainer.evaluate(), "eval_samples": len(raw["validation"])}
    report_metrics(trainer, "eval", student_metrics)
    teacher_results = {f"teacher_{key}": value for key, value in teacher_metrics.items()}
    for k, values in enumerate(member_metrics):  # each teacher of an ensemble, `teacher_*` being the ensemble's
        teacher_results.update({f"teacher{k}_{key}": value for key, value in values.items()})
    trainer.save_metrics("teacher", teacher_results)
    metrics = {**train_metrics, **student_metrics, **teacher_results}

    # Every process measures the rows (under DeepSpeed ZeRO-3 a forward pass gathers weights from all of them); one
    # writes the files and one prints the table. All go on to the push, whose save may gather weights too.
    def saved(path):
        return None if is_peft_adapter(path) else path

    if member_metrics:
        rows = [model_summary_row(f"teacher ensemble ({len(teachers)})", teacher, teacher_metrics, task, tokenizer,
                                  config, None)]
        rows += [model_summary_row(f"teacher {k}", member, values, task, tokenizer, config, saved(path))
                 for k, (member, values, path) in enumerate(zip(teachers, member_metrics, teacher_paths, strict=True))]
    else:
        rows = [model_summary_row("teacher", teacher, teacher_metrics, task, tokenizer, config,
                                  saved(teacher_paths[0]))]
    rows.append(model_summary_row(f"student ({config.method})", trainer.model, student_metrics, task,
                                  student_tokenizer, config, config.output_dir))
    export_rows = []
    if export_args.export and config.should_save:
        # From the saved student, by the processes that write: before the card and the push, which uploads `onnx/`.
        export_rows, export_metrics = onnx_summary_rows(
            trainer.model, export_args, task, student_tokenizer, tokenized["validation"],
            make_collator(student_tokenizer, data_args, task, max_length=student_max_seq_length), config)
        trainer.save_metrics("onnx", export_metrics)
        metrics.update(export_metrics)
    table = summary_table(rows + export_rows)
    metrics["summary"] = rows + export_rows
    local_data = data_args.train_file or data_args.data_dir or local_dataset(data_args.dataset_name)
    trainer.model_card_details.update(
        teacher=" + ".join(teacher_paths),
        task=task,
        summary_rows=rows,
        export_rows=export_rows,
        dataset=None if local_data else data_args.dataset_name or task.hub_dataset[0],
        local_data=local_data,
        base_model=teacher_args.teacher_hub_id,
        training_rows=row_counts,
    )
    if config.should_save:
        write_text_atomic(f"{config.output_dir}/summary.md", table + "\n")
        trainer.create_model_card()  # README.md; `push_to_hub` writes the same card again before uploading
    if trainer.is_world_process_zero():
        trained_on = f"{row_counts['labelled']} labelled" + (
            f" + {row_counts['transfer']} transfer" if row_counts["transfer"] else "")
        print(f"\nDistillation results ({task.name}; trained on {trained_on} rows, {len(raw['validation'])} dev "
              f"examples)\n\n{table}\n")
    if config.push_to_hub:
        trainer.push_to_hub(finetuned_from=teacher_paths[0], tasks=task.pipeline_tag)
    write_completion_marker(config, "run_distill.py", trainer.accelerator)
    return metrics


if __name__ == "__main__":
    main()
