"""Teacher ensembles: several fine-tuned teachers distilled as one.

The target is the average of the teachers' probabilities at the distillation temperature T, as Hinton et al.
describe for an ensemble (each teacher's logits divided by T before its softmax, then averaged). `TeacherEnsemble`
returns logits whose softmax at T is exactly that average, so every method reads the ensemble like one teacher:

- classification (also per token): `z = T · log( (1/K) Σ_k softmax(z_k / T) )`, so `softmax(z / T) = (1/K) Σ_k
  softmax(z_k / T)`;
- multi-label: per label `p = (1/K) Σ_k σ(z_k / T)` and `z = T · log(p / (1 − p))`, so `σ(z / T) = p`;
- regression: the mean prediction `z = (1/K) Σ_k z_k`.

Intermediate-layer terms (PKD's [CLS] states, TinyBERT's hidden states and attention maps) read one designated
teacher (`intermediate_teacher`), whose hidden states the ensemble returns. The temperature is a buffer of the
module, so the teacher cache's weight hash changes with it: a cache of the ensemble's targets at one T never serves
another T.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["TeacherEnsemble", "TeacherEnsembleOutput", "ensemble_logits", "task_loss"]


def ensemble_logits(logits: Sequence[torch.Tensor], temperature: float, problem_type: str | None) -> torch.Tensor:
    """The ensemble's logits from the teachers' `(…, C)` logits (see the module doc), float32."""
    stacked = torch.stack([teacher_logits.float() for teacher_logits in logits])  # (K, …, C)
    if problem_type == "regression" or (stacked.size(-1) == 1 and problem_type != "multi_label_classification"):
        return stacked.mean(dim=0)
    count = torch.log(torch.tensor(float(len(logits)), device=stacked.device))
    if problem_type == "multi_label_classification":
        # log p − log(1 − p), from log-space means so that probabilities near 0 or 1 stay finite.
        log_p = torch.logsumexp(F.logsigmoid(stacked / temperature), dim=0) - count
        log_not_p = torch.logsumexp(F.logsigmoid(-stacked / temperature), dim=0) - count
        return temperature * (log_p - log_not_p)
    return temperature * (torch.logsumexp(F.log_softmax(stacked / temperature, dim=-1), dim=0) - count)


@dataclass
class TeacherEnsembleOutput(SequenceClassifierOutput):
    """The ensemble's `SequenceClassifierOutput` and `member_logits`, each teacher's own logits in teacher order (in
    its dtype), which `hf_distill.cli.evaluate_ensemble` scores from the ensemble's one pass."""

    member_logits: tuple[torch.FloatTensor, ...] | None = None


class TeacherEnsemble(nn.Module):
    """`teachers` (2 or more, fine-tuned on the same task: same labels, head and vocabulary) called as one teacher.

    Args:
        teachers: the fine-tuned models.
        temperature: the T at which their probabilities are averaged (the run's distillation temperature).
        intermediate_teacher: index of the teacher whose hidden states the ensemble returns (and whose layers
            intermediate terms, layer maps and students built from "the teacher" use).
    """

    def __init__(self, teachers: Sequence[PreTrainedModel], temperature: float = 1.0, intermediate_teacher: int = 0):
        super().__init__()
        if len(teachers) < 2:
            raise ValueError(f"A teacher ensemble needs 2 or more teachers, got {len(teachers)}. Pass one teacher as "
                             "a model, not an ensemble.")
        if not 0 <= intermediate_teacher < len(teachers):
            raise ValueError(
                f"`intermediate_teacher` is {intermediate_teacher}, but there are {len(teachers)} teachers: pass an "
                f"index in [0, {len(teachers) - 1}]."
            )
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0 to average the teachers' probabilities, got {temperature}.")
        _check_same_task(teachers)
        self.teachers = nn.ModuleList(teachers)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.intermediate_teacher = intermediate_teacher

    @property
    def intermediate(self) -> PreTrainedModel:
        """The teacher whose hidden states and layers the intermediate-layer terms read."""
        return self.teachers[self.intermediate_teacher]

    @property
    def config(self):
        return self.intermediate.config

    @property
    def device(self) -> torch.device:
        return self.intermediate.device

    @property
    def dtype(self) -> torch.dtype:
        return self.intermediate.dtype

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> TeacherEnsembleOutput:
        """The ensemble's logits, each teacher's (and the intermediate teacher's hidden states when asked for); with
        `labels`, the task loss of the ensemble's logits as the teachers' heads compute it (for evaluation). The
        named inputs are the teachers' (Trainer keeps the dataset columns a forward names)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids, **kwargs}
        inputs = {name: value for name, value in inputs.items() if value is not None}
        outputs = [
            teacher(**inputs, output_hidden_states=output_hidden_states and k == self.intermediate_teacher)
            for k, teacher in enumerate(self.teachers)
        ]
        logits = ensemble_logits([output.logits for output in outputs], float(self.temperature),
                                 self.config.problem_type)
        loss = None if labels is None else task_loss(logits, labels, self.config.problem_type)
        return TeacherEnsembleOutput(loss=loss, logits=logits,
                                     hidden_states=outputs[self.intermediate_teacher].hidden_states,
                                     member_logits=tuple(output.logits for output in outputs))


def task_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """The mean task loss of `logits` as a classifier head computes it: MSE (regression), BCE (multi-label) or CE
    over the labels that are not -100 (also per token)."""
    if problem_type == "regression" or logits.size(-1) == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def _check_same_task(teachers: Sequence[PreTrainedModel]) -> None:
    """Every teacher predicts the same labels, in the same order, with the same head, from the same token ids."""
    first = teachers[0]
    facts = {
        "head": lambda model: type(model).__name__.endswith("ForTokenClassification"),
        "id2label": lambda model: model.config.id2label,
        "problem_type": lambda model: model.config.problem_type,
        "vocab_size": lambda model: model.config.vocab_size,
    }
    for k, teacher in enumerate(teachers[1:], start=1):
        for name, fact in facts.items():
            if fact(teacher) != fact(first):
                what = "token or sequence classifier" if name == "head" else name
                raise ValueError(
                    f"Teacher {k} differs from teacher 0 in its {what} ({fact(teacher)!r} vs {fact(first)!r}): an "
                    "ensemble averages predictions of the same labels, from the same tokens. Pass teachers fine-tuned "
                    "on the same task with the same tokenizer (`teacher_model_name_or_path`)."
                )
