"""`TaskSpec`: what a task looks like once loaded, whatever its source (GLUE, CoNLL-2003, the Hub, your files).

Three task types, each with its standard dataset form (`TaskSpec.features`):
- sequence classification (`label` a `ClassLabel`, or a float32 score for regression);
- multi-label classification (`label` a list of `ClassLabel` ids, any number per row);
- token classification (`tokens` a list of words, `label` one `ClassLabel` id per word).
Every split also has `idx`, the row's index in its original split, which keys the teacher-output cache.
"""

from dataclasses import dataclass
from numbers import Integral
from typing import Any

from datasets import ClassLabel, Features, List, Value
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

__all__ = [
    "AUGMENTED_COLUMN",
    "MULTI_LABEL_CLASSIFICATION",
    "SEQUENCE_CLASSIFICATION",
    "TASK_TYPES",
    "TOKEN_CLASSIFICATION",
    "TaskSpec",
    "normalize_task_name",
]

SEQUENCE_CLASSIFICATION = "sequence_classification"
MULTI_LABEL_CLASSIFICATION = "multi_label_classification"
TOKEN_CLASSIFICATION = "token_classification"
TASK_TYPES = (SEQUENCE_CLASSIFICATION, MULTI_LABEL_CLASSIFICATION, TOKEN_CLASSIFICATION)
CUSTOM_TASK_NAME = "custom"
# Marks rows made by augmentation (hf_distill.augment): they keep their source's label, which the text may no longer
# have, so the trainer trains the hard-label CE on the other rows only (`DistillationConfig.train_ce_on_augmented`).
AUGMENTED_COLUMN = "augmented"
# Marks unlabelled transfer rows (`--transfer_file`, `--transfer_dataset_name`), which the teacher labels: their label
# column holds a placeholder (`TaskSpec.placeholder_label`); the hard-label CE never reads them, every distillation
# term does.
TRANSFER_COLUMN = "transfer"


def normalize_task_name(name: str) -> str:
    """A task name as the Hub spells it: "SST-2", "sst_2" and "sst2" all give "sst2", "CoNLL-2003" "conll2003"."""
    return name.lower().replace("-", "").replace("_", "")


@dataclass(frozen=True)
class TaskSpec:
    """What a task looks like once loaded.

    Attributes:
        name: the named task ("sst2", "mnli", "conll2003", ...), or "custom" for any other dataset.
        text_columns: one or two text column names (token classification: the one column of word lists).
        label_names: label names in id order (label id = position), or None for regression.
        metric_names: the task's metrics; the first one is the main metric used for model selection.
        validation_split: the split evaluated on ("validation", or "validation_matched" for MNLI).
        task_type: sequence, multi-label or token classification (`TASK_TYPES`).
        hub_dataset: the Hub dataset and config a named task loads from when no local data is given.
        label_column: the label column of that Hub dataset (and the default of files for the task).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metric_names: tuple[str, ...]
    validation_split: str = "validation"
    task_type: str = SEQUENCE_CLASSIFICATION
    hub_dataset: tuple[str, str | None] | None = None
    label_column: str = "label"

    def __post_init__(self):
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"`task_type` is {self.task_type!r}; expected one of {list(TASK_TYPES)}.")

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def is_token_classification(self) -> bool:
        return self.task_type == TOKEN_CLASSIFICATION

    @property
    def is_multi_label(self) -> bool:
        return self.task_type == MULTI_LABEL_CLASSIFICATION

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def auto_model_class(self) -> type:
        """The `AutoModelFor…` class of the task's models (multi-label: sequence classification with
        `problem_type="multi_label_classification"`, from `label_config`)."""
        return AutoModelForTokenClassification if self.is_token_classification else AutoModelForSequenceClassification

    @property
    def pipeline_tag(self) -> str:
        """The Hub pipeline tag (`pipeline(...)` task) of the task's models."""
        return "token-classification" if self.is_token_classification else "text-classification"

    @property
    def main_metric(self) -> str:
        """The metric to select checkpoints on (`metric_for_best_model`) and to report in one number."""
        return self.metric_names[0]

    def label_config(self) -> dict[str, Any]:
        """`from_pretrained`/config kwargs that give a model this task's labels, in the dataset's order."""
        if self.label_names is None:
            return {"num_labels": 1, "problem_type": "regression"}
        config = {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: i for i, name in enumerate(self.label_names)},
        }
        if self.is_multi_label:
            config["problem_type"] = MULTI_LABEL_CLASSIFICATION
        return config

    @property
    def features(self) -> Features:
        """The features every split of `load_task_dataset` has, whatever the source."""
        if self.label_names is None:
            label = Value("float32")
        elif self.task_type == SEQUENCE_CLASSIFICATION:
            label = ClassLabel(names=list(self.label_names))
        else:
            label = List(ClassLabel(names=list(self.label_names)))
        text = List(Value("string")) if self.is_token_classification else Value("string")
        return Features({**{column: text for column in self.text_columns}, "label": label, "idx": Value("int64")})

    def placeholder_label(self, text: Any) -> Any:
        """The label column's value for an unlabelled (transfer) row with text `text`, never read as a label: 0 (0.0
        for regression), no labels (multi-label), or tag 0 on every word (token classification, whose tags mark the
        words' first sub-tokens: the predictions that count)."""
        if self.is_token_classification:
            return [0] * len(text)
        if self.is_multi_label:
            return []
        return 0.0 if self.is_regression else 0

    def label_id(self, value: Any, where: str) -> int | float:
        """One raw label as the task's label id: a label name, or (named tasks only) an integer id; a float score for
        regression.

        Custom tasks are named after their raw labels (label 3 is called "3" but may have id 0), so there a label is
        only ever looked up by name.
        """
        if self.label_names is None:
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: the label {value!r} is not a number, but task {self.name!r} is a regression "
                    "task with float scores. Fix the label column."
                ) from None
        name = value if isinstance(value, str) else str(value)
        if name in self.label_names:
            return self.label_names.index(name)
        ids_allowed = self.name != CUSTOM_TASK_NAME
        if ids_allowed and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        elif ids_allowed and isinstance(value, float) and value.is_integer():
            value = int(value)
        is_id = isinstance(value, Integral) and not isinstance(value, bool)
        if ids_allowed and is_id and 0 <= value < self.num_labels:
            return int(value)
        expected = f"one of the label names {list(self.label_names)}"
        if ids_allowed:
            expected += f" or an id in [0, {self.num_labels - 1}]"
        raise ValueError(
            f"{where}: the label {value!r} of task {self.name!r} is not {expected}. Fix the labels, or the "
            "`task_name`."
        )
