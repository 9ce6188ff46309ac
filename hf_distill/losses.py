"""Distillation losses as pure tensor functions, written from the papers (see `shared/docs/methods.md`).

Every function returns one loss value per example when `reduction="none"`, their sum with `"sum"` and their mean
with `"mean"` (the paper's form). Within an example each function normalises exactly as its paper/reference does,
so averaging the per-example values over the batch gives the published normalisation. The trainer uses `"sum"`
and divides by the number of examples in the whole accumulated batch (the hard-label loss: by its labelled
examples), which makes gradient accumulation exact.
"""

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum", "none"]


def _reduce(per_example: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    if reduction == "mean":  # of no rows: 0, as `hard_label_loss` gives, not 0 / 0
        return per_example.sum() / max(per_example.numel(), 1)
    raise ValueError(f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}.")


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Hinton et al.: `T² · KL(softmax(z_T/T) ‖ softmax(z_S/T))`, forward KL (teacher distribution first).

    Args:
        student_logits, teacher_logits: `(B, C)`.
        temperature: `T > 0`. The `T²` factor keeps gradient magnitudes comparable across temperatures.

    Per example the KL is summed over classes (PyTorch's `batchmean`, not the mean over `B·C` of PKD's reference
    code, whose α/β values are therefore not directly comparable).
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_example = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    return _reduce(per_example * temperature**2, reduction)


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, reduction: Reduction = "mean"
) -> torch.Tensor:
    """TinyBERT's prediction-layer loss: `Σ_c −softmax(z_T/t)_c · log_softmax(z_S/t)_c` per example, shapes `(B, C)`.

    Differs from `kd_loss` by the teacher entropy (a constant for the student) and by having no `t²` factor, as in
    the paper. TinyBERT's reference code also divides by `C`; we do not, so its learning rates transfer as they are
    while loss magnitudes are `C` times larger.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    return _reduce(-(p_teacher * log_p_student).sum(dim=-1), reduction)


def logit_mse_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Tang et al.: `‖z_T − z_S‖²` on raw logits `(B, C)` (squared L2 norm per example, summed over classes).

    `nn.MSELoss()` would also divide by `C`. With `C = 1` (regression) this is the MSE to the teacher's prediction,
    the KD term for STS-B.
    """
    diff = student_logits.float() - teacher_logits.float()
    return _reduce(diff.pow(2).sum(dim=-1), reduction)


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Cross-entropy to gold labels for classification (`(B, C)` logits, `(B,)` ids), squared error to the gold score
    for regression (`C == 1`, `(B,)` scores).

    A label of -100 marks a row without a hard label, for either kind: its per-row value is 0 (`"none"`), it adds
    nothing to `"sum"`, and `"mean"` averages over the labelled rows only (0 when there are none), as
    `nn.CrossEntropyLoss(ignore_index=-100)` does.
    """
    labelled = labels != -100
    if logits.size(-1) == 1:
        scores = torch.where(labelled, labels.float(), 0.0)
        per_example = torch.where(labelled, (logits.float().squeeze(-1) - scores).pow(2), 0.0)
    else:
        per_example = F.cross_entropy(logits.float(), labels.long(), ignore_index=-100, reduction="none")
    if reduction == "mean":
        return per_example.sum() / labelled.sum().clamp(min=1)
    return _reduce(per_example, reduction)


def multi_label_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Hinton's KD for multi-label classification, where each of the `C` labels is a yes/no decision of its own:
    `T² · Σ_c KL(Bernoulli(p_c) ‖ Bernoulli(q_c))`, `p_c = σ(z_T,c/T)`, `q_c = σ(z_S,c/T)`, i.e. per label
    `p log(p/q) + (1 − p) log((1 − p)/(1 − q))`, summed over the labels (as `kd_loss` sums over classes).

    Args:
        student_logits, teacher_logits: `(B, C)` per-label logits.
        temperature: `T > 0`, applied to each label's logit; `T²` keeps gradient magnitudes comparable.
    """
    student, teacher = student_logits.float() / temperature, teacher_logits.float() / temperature
    p_teacher = torch.sigmoid(teacher)
    # log σ(x) and log(1 − σ(x)) = log σ(−x), computed without overflow.
    kl = p_teacher * (F.logsigmoid(teacher) - F.logsigmoid(student)) + (1 - p_teacher) * (
        F.logsigmoid(-teacher) - F.logsigmoid(-student)
    )
    return _reduce(kl.sum(dim=-1) * temperature**2, reduction)


def multi_label_hard_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Binary cross-entropy to 0/1 labels `(B, C)`, summed over the labels of each row (transformers' multi-label
    loss averages over them instead, `C` times smaller). A row of -100 has no hard label: 0 in `"none"`, left out of
    `"sum"`, and `"mean"` averages over the labelled rows."""
    labelled = (labels != -100).all(dim=-1)
    targets = torch.where(labelled.unsqueeze(-1), labels.float(), 0.0)
    per_label = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    per_example = torch.where(labelled, per_label.sum(dim=-1), 0.0)
    if reduction == "mean":
        return per_example.sum() / labelled.sum().clamp(min=1)
    return _reduce(per_example, reduction)


def patient_loss(
    student_states: torch.Tensor,
    teacher_states: torch.Tensor,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """PKD's patient loss between the [CLS] vectors of mapped layers.

    Args:
        student_states, teacher_states: `(B, J, d)`, the [CLS] (position 0) output of each of the `J` mapped layers.
        normalize: divide each vector by its L2 norm first (PKD's default); `False` is the reference's other mode.

    Per example: the mean over `J·d` of the squared difference, so the batch mean averages over `B·J·d` as the
    reference code does (which is why its β values are in the hundreds).
    """
    student_states, teacher_states = student_states.float(), teacher_states.float()
    if normalize:
        student_states = F.normalize(student_states, p=2, dim=-1)
        teacher_states = F.normalize(teacher_states, p=2, dim=-1)
    per_example = (student_states - teacher_states).pow(2).flatten(1).mean(dim=1)
    return _reduce(per_example, reduction)


def hidden_mse_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """TinyBERT's embedding/hidden-state loss `MSE(H_S W_h, H_T)` for one mapped layer.

    Args:
        student_hidden: `(B, L, d_T)`, already projected to the teacher width when the student is narrower.
        teacher_hidden: `(B, L, d_T)`.
        attention_mask: `(B, L)`, 1 for real tokens. `None` (the reference): the mean over all `L·d` entries of an
            example, padded positions included. Given: the mean over the example's real positions only.
    """
    squared = (student_hidden.float() - teacher_hidden.float()).pow(2)
    if attention_mask is None:
        per_example = squared.flatten(1).mean(dim=1)
    else:
        mask = attention_mask.to(squared.dtype).unsqueeze(-1)
        per_example = (squared * mask).sum(dim=(1, 2)) / (mask.sum(dim=(1, 2)) * squared.size(-1)).clamp(min=1)
    return _reduce(per_example, reduction)


def _computed(scores: torch.Tensor) -> torch.Tensor:
    """Where `scores` holds a computed entry, not the `finfo(dtype).min` a model adds at pairs it masks."""
    return scores > torch.finfo(scores.dtype).min / 2


def attention_score_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    attention_mask: torch.Tensor,
    masked_mean: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """TinyBERT's attention loss for one mapped layer, on pre-softmax scores `QKᵀ/√d_head` (or probabilities).

    Args:
        student_scores, teacher_scores: `(B, H, L, L)` with equal head counts, indexed `[b, h, query, key]`.
        attention_mask: `(B, L)`, 1 for real tokens.
        masked_mean: `False` (the reference): padded *key* columns are zeroed in both tensors, padded *query* rows
            stay, and the mean runs over all `H·L·L` entries of an example. `True`: the mean over the `H·n²` valid
            (query, key) pairs of an example with `n` real tokens.

    Zeroing is done with `torch.where` on the mask rather than by subtracting masked scores, which hold
    `finfo(dtype).min` in transformers 5 and would overflow in half precision.

    A pair the model itself masks in either map (a score at `finfo(dtype).min`: outside a sliding attention window,
    as in ModernBERT's local layers) is zeroed too: the layer never computes it, and a local student layer mapped
    to a global teacher layer would otherwise add `(finfo.min - s)²`, an infinite loss. BERT masks only padded
    keys, so its loss is unchanged.
    """
    key_mask = attention_mask.bool()[:, None, None, :]
    if masked_mean:
        pair_mask = key_mask & attention_mask.bool()[:, None, :, None]
    else:
        pair_mask = key_mask.expand_as(student_scores)
    pair_mask = pair_mask & _computed(student_scores) & _computed(teacher_scores)
    diff = torch.where(pair_mask, student_scores.float() - teacher_scores.float(), 0.0)
    squared_sum = diff.pow(2).sum(dim=(1, 2, 3))
    if masked_mean:
        count = attention_mask.sum(dim=1).float().pow(2) * student_scores.size(1)
    else:
        count = torch.full_like(squared_sum, student_scores[0].numel())
    return _reduce(squared_sum / count.clamp(min=1), reduction)
