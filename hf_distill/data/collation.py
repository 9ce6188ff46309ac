"""Batches of a cross-tokenizer run: each model's inputs (and per-token labels) padded with its own tokenizer, in one
batch."""

from typing import Any

from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, PreTrainedTokenizerBase

from .tokenization import MODEL_INPUT_COLUMNS, STUDENT_LABELS, STUDENT_PREFIX

__all__ = ["TwoTokenizerCollator"]


class TwoTokenizerCollator:
    """Pads the teacher's inputs (`input_ids`, …) with `teacher_collator` and the student's (`student_input_ids`, …)
    with `student_tokenizer`, each to its own longest row (or, with `padding="max_length"`, to its `max_length`: the
    student's to `student_max_length`, by default the teacher's). A token task's `teacher_collator`
    (`DataCollatorForTokenClassification`) pads each side's labels with -100 the same way (`labels`,
    `student_labels`). The other columns (`idx`, flags, the cache row) come from the teacher side, once."""

    def __init__(self, teacher_collator: DataCollatorWithPadding | DataCollatorForTokenClassification,
                 student_tokenizer: PreTrainedTokenizerBase, student_max_length: int | None = None):
        self.teacher_collator = teacher_collator
        self.student_collator = type(teacher_collator)(
            student_tokenizer, padding=teacher_collator.padding,
            max_length=student_max_length or teacher_collator.max_length,
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        student_names = [STUDENT_PREFIX + name for name in MODEL_INPUT_COLUMNS] + [STUDENT_LABELS]
        student = [{name[len(STUDENT_PREFIX):]: row[name] for name in student_names if name in row}
                   for row in features]
        teacher = [{name: value for name, value in row.items() if name not in student_names} for row in features]
        batch = self.teacher_collator(teacher)
        if not any(student):  # the teacher evaluated alone: Trainer dropped the columns its forward does not take
            return batch
        batch.update({STUDENT_PREFIX + name: value for name, value in self.student_collator(student).items()})
        return batch
