"""PeaKD's PTP labels (pretraining with teacher predictions, Cho & Kang 2020).

Each training example gets one of four labels from the teacher's prediction and confidence `c = max softmax(z_T)`:

    0  teacher right and confident  (argmax == y, c > t1)
    1  teacher right and unsure     (argmax == y, c <= t1)
    2  teacher wrong and confident  (argmax != y, c > t2)
    3  teacher wrong and unsure     (argmax != y, c <= t2)

The student is trained on these labels with a 4-way head (CE, early stopping on dev), the head is discarded, and KD or
PKD on the task starts from that encoder.
"""

import torch

from .task_spec import normalize_task_name

# (t1, t2) from the PeaKD reference code, keyed by GLUE task name.
PTP_THRESHOLDS: dict[str, tuple[float, float]] = {
    "rte": (0.8, 0.6),
    "mrpc": (0.95, 0.75),
    "sst2": (0.98, 0.8),
    "qnli": (0.98, 0.7),
}
PTP_NUM_LABELS = 4
PTP_LABEL_NAMES: tuple[str, ...] = ("right_confident", "right_unsure", "wrong_confident", "wrong_unsure")


def ptp_labels(teacher_logits: torch.Tensor, labels: torch.Tensor, t1: float, t2: float) -> torch.LongTensor:
    """PTP labels from teacher logits and gold labels.

    Args:
        teacher_logits: (B, C) raw teacher logits, C >= 2.
        labels: (B,) gold class ids.
        t1: confidence threshold for examples the teacher gets right, in (0, 1).
        t2: confidence threshold for examples the teacher gets wrong, in (0, 1).

    Returns:
        (B,) long tensor in {0, 1, 2, 3}: `2 * (teacher wrong) + (not confident)`, where confident means c > t1 for
        right and c > t2 for wrong predictions (so c == t1 on a right prediction is label 1).
    """
    if teacher_logits.ndim != 2 or teacher_logits.shape[1] < 2:
        raise ValueError(
            f"`teacher_logits` has shape {tuple(teacher_logits.shape)}; PTP needs (batch, classes) logits of a "
            "classification teacher with at least 2 classes. Regression tasks (STS-B) have no PTP labels."
        )
    if labels.shape != teacher_logits.shape[:1]:
        raise ValueError(
            f"`labels` has shape {tuple(labels.shape)}, expected ({teacher_logits.shape[0]},) to match "
            f"`teacher_logits` {tuple(teacher_logits.shape)}. Pass one gold class id per example."
        )
    confidence, prediction = teacher_logits.float().softmax(dim=-1).max(dim=-1)
    right = prediction == labels
    confident = torch.where(right, confidence > t1, confidence > t2)
    return 2 * (~right).long() + (~confident).long()


def resolve_ptp_thresholds(task_name: str | None, threshold: float | None = None) -> tuple[float, float]:
    """The PTP thresholds (t1, t2) to use.

    Args:
        task_name: GLUE task ("rte", "mrpc", "sst2" / "SST-2", "qnli", ...); selects the PeaKD default.
        threshold: overrides the default; the one value is used as both t1 and t2.

    Raises `ValueError` naming `ptp_threshold` for a threshold outside (0, 1), or when `threshold` is unset and
    the task has no default.
    """
    if threshold is not None:
        if not 0 < threshold < 1:
            raise ValueError(
                f"`ptp_threshold` is {threshold}, but PTP thresholds are confidences in (0, 1). Use e.g. 0.9."
            )
        return float(threshold), float(threshold)
    task = normalize_task_name(task_name or "")
    if task not in PTP_THRESHOLDS:
        raise ValueError(
            f"`ptp_threshold` is not set and task {task_name!r} has no PeaKD default (defaults exist for "
            f"{', '.join(sorted(PTP_THRESHOLDS))}). Pass `--ptp_threshold` with a confidence in (0, 1), e.g. 0.9."
        )
    return PTP_THRESHOLDS[task]


__all__ = ["PTP_LABEL_NAMES", "PTP_NUM_LABELS", "PTP_THRESHOLDS", "ptp_labels", "resolve_ptp_thresholds"]
