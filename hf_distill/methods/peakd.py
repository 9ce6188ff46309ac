"""PeaKD (Cho & Kang 2020, methods.md §5): PTP (pretraining with teacher predictions), then Patient KD from that
encoder, normally into an SPS (shuffled parameter sharing) student.

PTP: the student learns to predict whether the teacher is confidently or unconfidently right or wrong on each
training example (`hf_distill.data.ptp`), with a 4-way head that is then replaced by a fresh task head.
"""

import dataclasses
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, TrainingArguments
from transformers.utils import logging

from ..classifier_trainer import ClassifierTrainer
from ..data import TaskSpec
from ..data.ptp import PTP_LABEL_NAMES, PTP_NUM_LABELS, ptp_labels, resolve_ptp_thresholds
from ..data.task_spec import AUGMENTED_COLUMN, SEQUENCE_CLASSIFICATION, TRANSFER_COLUMN
from .pkd import PKD
from .registry import register_method

logger = logging.get_logger(__name__)


@dataclass
class PTPArguments:
    _argument_group_name = "PeaKD pretraining (PTP)"

    ptp: bool = field(
        default=True,
        metadata={"help": "--method peakd: pretrain the student on the teacher's predictions first (--no_ptp skips)."},
    )
    ptp_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Confidence threshold in (0, 1) for both right and wrong predictions. Default: the reference's "
            "per-task (t1, t2): rte (0.8, 0.6), mrpc (0.95, 0.75), sst2 (0.98, 0.8), qnli (0.98, 0.7)."
        },
    )
    ptp_num_train_epochs: float = field(
        default=3.0, metadata={"help": "Epochs of the PTP stage (the checkpoint with the best dev loss is kept)."}
    )


def replace_classifier(model: PreTrainedModel, label_names: tuple[str, ...]) -> None:
    """Give a `…ForSequenceClassification` model a freshly initialised output layer for these class labels, in place
    (PTP only runs on classification tasks).

    The output layer is `classifier` when it is an `nn.Linear` (BERT, DistilBERT, DeBERTa, ModernBERT), or the
    `out_proj` of a classification head module (RoBERTa, XLM-R, CamemBERT, ELECTRA); the head's hidden layer stays,
    as BERT's pooler does.
    """
    num_labels = len(label_names)
    head = getattr(model, "classifier", None)
    has_out_proj = isinstance(getattr(head, "out_proj", None), nn.Linear)
    parent, name = (head, "out_proj") if has_out_proj else (model, "classifier")
    old = getattr(parent, name, None)
    if not isinstance(old, nn.Linear):
        raise ValueError(
            f"PTP swaps the student's output layer, which must be an `nn.Linear` named `classifier` or "
            f"`classifier.out_proj`; {type(model).__name__}'s `classifier` is a {type(head).__name__}. Use a student "
            "with a stock classification head, or `--ptp false`."
        )
    new = nn.Linear(old.in_features, num_labels).to(device=old.weight.device, dtype=old.weight.dtype)
    model._init_weights(new)
    setattr(parent, name, new)
    model.num_labels = num_labels
    model.config.problem_type = "single_label_classification"
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}


def _with_ptp_labels(dataset: Dataset, teacher_logits: torch.Tensor, t1: float, t2: float) -> Dataset:
    labels = ptp_labels(teacher_logits, torch.tensor(dataset["labels"]), t1, t2)
    counts = torch.bincount(labels, minlength=PTP_NUM_LABELS).tolist()
    logger.info("PTP labels on %d examples: %s", len(dataset), dict(zip(PTP_LABEL_NAMES, counts)))
    return dataset.remove_columns("labels").add_column("labels", labels.tolist())


def ptp_training_rows(train_dataset: Dataset, config: TrainingArguments) -> Dataset:
    """The rows PTP trains on: a PTP label says whether the teacher is right about the gold label, which unlabelled
    transfer rows (marked `transfer`) and rows marked `augmented` (they carry their source's) do not have, so those
    are left out (augmented rows stay with `train_ce_on_augmented`)."""
    columns = [TRANSFER_COLUMN] if TRANSFER_COLUMN in train_dataset.column_names else []
    if AUGMENTED_COLUMN in train_dataset.column_names and not config.train_ce_on_augmented:
        columns.append(AUGMENTED_COLUMN)
    if not columns:
        return train_dataset
    originals = train_dataset.filter(lambda *flags: not any(flags), input_columns=columns)
    logger.info("PTP stage: %d rows with a gold label of %d", len(originals), len(train_dataset))
    return originals


def run_ptp_stage(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    task: TaskSpec,
    config: TrainingArguments,
    ptp_args: PTPArguments,
    data_collator,
) -> PreTrainedModel:
    """Train `student` on PTP labels (CE, best dev loss kept) over `ptp_training_rows`, then give it a fresh head for
    `task`, in place."""
    if task.is_regression:
        raise ValueError(
            "PTP labels come from the teacher's class predictions, but the task is a regression. Pass `--no_ptp`."
        )
    t1, t2 = resolve_ptp_thresholds(task.name, ptp_args.ptp_threshold)
    train_dataset = ptp_training_rows(train_dataset, config)
    logger.info("PTP stage: thresholds t1=%s (teacher right), t2=%s (teacher wrong)", t1, t2)
    stage_config = dataclasses.replace(
        config,
        output_dir=f"{config.output_dir}/_ptp",  # `push_to_hub` skips `_*` folders: checkpoints stay local
        num_train_epochs=ptp_args.ptp_num_train_epochs,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        push_to_hub=False,
    )
    predictor = ClassifierTrainer(
        model=teacher, args=stage_config, eval_dataset=eval_dataset, data_collator=data_collator
    )
    ptp_train = _with_ptp_labels(train_dataset, torch.from_numpy(predictor.predict(train_dataset).predictions), t1, t2)
    ptp_eval = _with_ptp_labels(eval_dataset, torch.from_numpy(predictor.predict(eval_dataset).predictions), t1, t2)

    replace_classifier(student, PTP_LABEL_NAMES)
    ClassifierTrainer(
        model=student, args=stage_config, train_dataset=ptp_train, eval_dataset=ptp_eval, data_collator=data_collator
    ).train()
    replace_classifier(student, task.label_names)
    return student


@register_method
class PeaKD(PKD):
    name = "peakd"
    summary = "PeaKD: PTP pretraining on the teacher's confidence, then Patient KD, into a shared-parameter student."
    # The reference's KD/PKD settings after PTP.
    presets = {"alpha": 0.7, "temperature": 10.0, "beta": 100.0}
    default_student = "sps"
    arguments = PTPArguments

    @classmethod
    def check_task(cls, task, method_arguments) -> None:
        super().check_task(task, method_arguments)
        if task.task_type != SEQUENCE_CLASSIFICATION and (method_arguments is None or method_arguments.ptp):
            raise ValueError(
                f"PeaKD's PTP (`ptp`) relabels each example by the teacher's confidence in its one label, which task "
                f"{task.name!r} ({task.task_type}) does not have. Pass `--ptp false` to train SPS + Patient KD, or "
                "use another `--method`."
            )

    @classmethod
    def before_training(cls, student, teacher, args, method_arguments, task, train_dataset, eval_dataset,
                        data_collator):
        if method_arguments is None or method_arguments.ptp:
            run_ptp_stage(student, teacher, train_dataset, eval_dataset, task, args,
                          method_arguments or PTPArguments(), data_collator)
        return student
