"""`DistillationMethod`: everything the rest of the package asks about a method, in one class per method.

A method is a subclass with class attributes (its name, presets, the config fields it reads, its default student,
whether its teacher outputs can be cached) and hooks: a config check, the teacher outputs it needs, a capture of
intermediate tensors around both forward passes, the loss terms, weights trained beside the student, and optional
stages before or after the main training. `DistillationTrainer` builds one instance per trainer; the registry
(`hf_distill.methods`) maps names to classes.

Loss terms are written against what every task has: prediction logits `(N, C)` over the predictions that count and
their hard labels (-100 where there is none): for sequence and multi-label classification N is the batch (one per
example), for token classification the labelled tokens of the batch (the first sub-token of each word). Terms
named in `example_terms` (intermediate-layer terms) are averaged over the examples, the others over the predictions.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from .. import losses
from ..data.task_spec import TASK_TYPES

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import TrainOutput

# `{name: (weight, sum over the batch of per-row values)}`, as `DistillationTrainer.compute_loss` adds them up.
LossTerms = dict[str, tuple[float, torch.Tensor]]
# Terms averaged over the rows that have a hard label; every other term over all rows.
LABELLED_TERMS = ("loss_ce",)


@dataclass
class LossInputs:
    """What a method's loss terms read for one batch.

    `student_outputs`/`teacher_outputs`: the models' outputs (`logits`, and `hidden_states` when the method asked for
    them; the teacher's may come from the cache, with the cached layers only). `labels`: hard labels of the
    predictions, -100 where one has none (augmented rows, see `DistillationTrainer.hard_labels`), or None; multi-label
    rows are `(N, C)` 0/1 floats. `attention_mask`: `(B, L)`. `student_captures`/`teacher_captures`: what the
    method's `capture` collected during each forward pass. `predictions`: the `(N, C)` student and teacher logits of
    the predictions that count, when they are not the outputs' logits (token classification: the labelled tokens).
    `is_multi_label`: whether each logit is a label of its own (sigmoid), not a class of a softmax.
    """

    student_outputs: Any
    teacher_outputs: Any
    labels: torch.Tensor | None
    attention_mask: torch.Tensor
    student_captures: Any = None
    teacher_captures: Any = None
    predictions: tuple[torch.Tensor, torch.Tensor] | None = None
    is_multi_label: bool = False

    @property
    def student_logits(self) -> torch.Tensor:
        return self.student_outputs.logits if self.predictions is None else self.predictions[0]

    @property
    def teacher_logits(self) -> torch.Tensor:
        return self.teacher_outputs.logits if self.predictions is None else self.predictions[1]

    @property
    def is_regression(self) -> bool:
        return self.student_logits.size(-1) == 1 and not self.is_multi_label


def hard_label_loss(student_logits: torch.Tensor, inputs: LossInputs) -> torch.Tensor:
    """The batch sum of the hard-label loss of the task: CE (squared error for regression; per-label binary CE for
    multi-label), rows labelled -100 left out."""
    if inputs.is_multi_label:
        return losses.multi_label_hard_loss(student_logits, inputs.labels, reduction="sum")
    return losses.hard_label_loss(student_logits, inputs.labels, reduction="sum")


class DistillationMethod:
    """A distillation method. Subclass it, set the class attributes and override the hooks that differ, then
    `hf_distill.methods.register_method(YourMethod)`.

    The default is Hinton's KD on the prediction logits: `alpha · T² · KL(teacher ‖ student)` (squared error to the
    teacher's prediction for regression) plus `(1 − alpha) · CE` on labelled rows.
    """

    # -- what the package asks about the method -----------------------------------------------------------------
    name: ClassVar[str] = ""
    # One sentence for the model card and `--help`.
    summary: ClassVar[str] = ""
    # Values for loss settings left unset (None) in `DistillationConfig` (alpha, temperature, beta). The default
    # loss below is KD's, so these are KD's (PKD's shipped run, α = 0.7, T = 10, as the PKD paper compares them).
    presets: ClassVar[dict[str, float]] = {"alpha": 0.7, "temperature": 10.0}
    # `DistillationConfig` fields this method reads among those only some methods read; a method that does not list
    # a field refuses it when set (`guards.check_fields_apply`). Fields no method lists (alpha, ...) are shared.
    fields: ClassVar[tuple[str, ...]] = ("temperature",)
    # Student kind built by `run_distill.py` when `--student_arch` is not given: plain, sps or bilstm.
    default_student: ClassVar[str] = "plain"
    # Whether its teacher outputs (logits and `cached_teacher_layers` [CLS] states) fit the teacher cache.
    cacheable: ClassVar[bool] = True
    # A dataclass of extra command-line arguments (`run_distill.py` parses it with the others), or None.
    arguments: ClassVar[type | None] = None
    # Loss terms averaged over the examples (intermediate-layer terms); the others are averaged over the predictions
    # that count (the same for sequence tasks; the labelled tokens for token classification).
    example_terms: ClassVar[tuple[str, ...]] = ()
    # Whether a term compares teacher and student token by token (TinyBERT's hidden states and attention maps): such
    # a method cannot distil into a student with another tokenizer.
    reads_aligned_tokens: ClassVar[bool] = False
    # Task types (`hf_distill.data.TASK_TYPES`) the method trains; run_distill.py refuses the others.
    task_types: ClassVar[tuple[str, ...]] = TASK_TYPES

    def __init__(self, args: "TrainingArguments", student: nn.Module, teacher: PreTrainedModel):
        self.args = args

    # -- configuration ----------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, args: "TrainingArguments") -> None:
        """Validate (and complete) a `DistillationConfig` of this method, before `TrainingArguments` reads it."""

    @classmethod
    def effective_settings(cls, args: "TrainingArguments") -> dict[str, Any]:
        """Settings beyond the config's fields to log and save in `distillation_config.json` (e.g. stages)."""
        return {}

    @classmethod
    def check_task(cls, task, method_arguments) -> None:
        """Refuse a task the method does not train (`task_types`), naming the fix."""
        if task.task_type not in cls.task_types:
            raise ValueError(
                f"`method` {cls.name!r} does not apply to task {task.name!r} ({task.task_type}); it trains "
                f"{list(cls.task_types)}. Choose another `--method` (kd, tinybert and bilstm train every task type)."
            )

    # -- teacher outputs --------------------------------------------------------------------------------------
    def cached_teacher_layers(self) -> list[int]:
        """Teacher hidden states (1-based, 0 = embeddings) whose [CLS] vector the loss reads; the cache stores them."""
        return []

    @property
    def needs_hidden_states(self) -> bool:
        return bool(self.cached_teacher_layers())

    def capture(self, model: nn.Module):
        """A context manager around one forward pass of `model` (teacher, then student) that yields what the loss
        reads besides the outputs (e.g. attention scores); `LossInputs.*_captures` receive it."""
        return nullcontext()

    # -- loss ---------------------------------------------------------------------------------------------------
    def loss_terms(self, inputs: LossInputs) -> LossTerms:
        return self.prediction_terms(inputs)

    def distillation_term(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> LossTerms:
        """The term matching predictions, `(N, C)` logits: Hinton's KL at `temperature` (per-row sums)."""
        kd = losses.kd_loss(student_logits, teacher_logits, self.args.temperature, reduction="sum")
        return {"loss_kd": (self.args.alpha, kd)}

    def multi_label_distillation_term(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> LossTerms:
        """The term matching multi-label predictions, `(N, C)` logits: Hinton's KL per label (each a Bernoulli) at
        `temperature`, summed over the labels (`losses.multi_label_kd_loss`)."""
        kd = losses.multi_label_kd_loss(student_logits, teacher_logits, self.args.temperature, reduction="sum")
        return {"loss_kd": (self.args.alpha, kd)}

    def prediction_terms(self, inputs: LossInputs) -> LossTerms:
        """`distillation_term` (the squared error to the teacher's prediction for regression, the per-label
        `multi_label_distillation_term` for multi-label) plus the hard-label loss weighted `1 − alpha` when there are
        labels."""
        student_logits, teacher_logits = inputs.student_logits, inputs.teacher_logits
        if inputs.is_regression:
            mse = losses.logit_mse_loss(student_logits, teacher_logits, reduction="sum")
            terms = {"loss_mse": (self.args.alpha, mse)}
        elif inputs.is_multi_label:
            terms = self.multi_label_distillation_term(student_logits, teacher_logits)
        else:
            terms = self.distillation_term(student_logits, teacher_logits)
        if inputs.labels is not None and self.args.alpha < 1.0:
            terms["loss_ce"] = (1.0 - self.args.alpha, hard_label_loss(student_logits, inputs))
        return terms

    # -- weights trained beside the student (never saved in it) -------------------------------------------------
    def extra_module(self) -> nn.Module | None:
        """Weights trained with the student but not part of it (TinyBERT's W_h): the trainer puts them in the
        optimizer (weights decay like the student's, biases do not), clips and clears their gradients with the
        student's, and saves them in checkpoints through `save_checkpoint`."""
        return None

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the extra weights into a Trainer checkpoint (main process only)."""

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Read them back when training resumes from `checkpoint_dir`."""

    # -- stages around the main training ----------------------------------------------------------------------
    @classmethod
    def before_training(cls, student: PreTrainedModel, teacher: PreTrainedModel, args, method_arguments, task,
                        train_dataset, eval_dataset, data_collator) -> PreTrainedModel:
        """A stage that prepares the student before distillation (PeaKD's PTP); returns the student."""
        return student

    @classmethod
    def train(
        cls, trainer_class: type["Trainer"], student: nn.Module, teacher: PreTrainedModel, args, **trainer_kwargs
    ) -> tuple["Trainer", "TrainOutput"]:
        """Train `student`: one `trainer_class` (the `DistillationTrainer`, passed in so that methods never import
        the trainer that imports them) unless the method runs stages (TinyBERT). Returns the last trainer, whose
        `save_model()` writes the final student, and its TrainOutput."""
        trainer = trainer_class(model=student, teacher_model=teacher, args=args, **trainer_kwargs)
        return trainer, trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
