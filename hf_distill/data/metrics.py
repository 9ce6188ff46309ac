"""Task metrics. Sequence and multi-label metrics in plain numpy, so evaluation needs neither the network nor
scikit-learn; token classification through `seqeval` (the conlleval definition everyone reports).

Definitions give the values of scikit-learn / scipy / seqeval: accuracy; binary F1 of class 1 (MRPC, QQP); macro-F1
(the unweighted mean of the per-class F1, a class absent from predictions and references counting 0, as
scikit-learn's `f1_score(average="macro")` over the labels seen); Matthews correlation (CoLA; 0.0 when predictions or
references are constant, as in scikit-learn); Pearson and Spearman correlation (STS-B; nan when an input is constant,
as in scipy). Multi-label: micro-/macro-F1 of the per-label decisions `sigmoid(logit) > 0.5` (logit > 0) and exact
match (every label of the row right). Token classification: entity-level precision/recall/F1 (seqeval's default,
conlleval) and token accuracy over the labelled positions.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

from .loading import get_task
from .task_spec import TaskSpec
from .tokenization import IGNORE_INDEX

__all__ = ["build_compute_metrics", "compute_glue_metrics", "load_glue_metric"]

GLUE_METRIC_DIR = Path(__file__).resolve().parent / "glue_metric"


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Share of exact matches. predictions, references: `(n,)` label ids."""
    return float(np.mean(predictions == references))


def binary_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """F1 of the positive class 1; 0.0 when there is no positive prediction or reference. Inputs: `(n,)` ids."""
    true_positives = np.sum((predictions == 1) & (references == 1))
    errors = np.sum(predictions != references)
    denominator = 2 * true_positives + errors
    return float(2 * true_positives / denominator) if denominator else 0.0


def _f1_scores(true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-class F1 from counts; 0 where a class has neither predictions nor references (scikit-learn's value)."""
    denominator = predicted + actual
    return np.divide(2 * true_positives, denominator, out=np.zeros(len(denominator)), where=denominator > 0)


def macro_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over the classes in predictions or references. Inputs: `(n,)` ids."""
    classes = np.unique(np.concatenate([predictions, references]))
    scores = _f1_scores(
        np.array([np.sum((predictions == c) & (references == c)) for c in classes]),
        np.array([np.sum(predictions == c) for c in classes]),
        np.array([np.sum(references == c) for c in classes]),
    )
    return float(scores.mean())


def multi_label_metrics(logits: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """`micro_f1`, `macro_f1` (over every label) and `exact_match` of `(n, C)` logits against `(n, C)` 0/1 labels,
    deciding each label at probability 0.5."""
    predictions, references = logits > 0, references > 0.5
    true_positives = (predictions & references).sum(axis=0)
    predicted, actual = predictions.sum(axis=0), references.sum(axis=0)
    micro_denominator = predicted.sum() + actual.sum()
    return {
        "micro_f1": float(2 * true_positives.sum() / micro_denominator) if micro_denominator else 0.0,
        "macro_f1": float(_f1_scores(true_positives, predicted, actual).mean()),
        "exact_match": float((predictions == references).all(axis=1).mean()),
    }


def token_classification_metrics(
    logits: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...], entity_metrics: bool = True
) -> dict[str, float]:
    """Entity-level `precision`/`recall`/`f1` (seqeval, conlleval's definition on IOB tags; with `entity_metrics`)
    and token `accuracy` of `(n, L, C)` logits against `(n, L)` tag ids, over the positions whose label is not -100."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    predictions = logits.argmax(axis=-1)
    kept = labels != IGNORE_INDEX
    accuracy = {"accuracy": float((predictions[kept] == labels[kept]).mean()) if kept.any() else 0.0}
    if not entity_metrics:
        return accuracy
    predicted_tags = [[label_names[i] for i in row[mask]] for row, mask in zip(predictions, kept, strict=True)]
    gold_tags = [[label_names[i] for i in row[mask]] for row, mask in zip(labels, kept, strict=True)]
    return {
        "f1": float(f1_score(gold_tags, predicted_tags, zero_division=0)),
        "precision": float(precision_score(gold_tags, predicted_tags, zero_division=0)),
        "recall": float(recall_score(gold_tags, predicted_tags, zero_division=0)),
        **accuracy,
    }


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K, as in scikit-learn). Inputs: `(n,)` label ids."""
    _, ids = np.unique(np.concatenate([references, predictions]), return_inverse=True)
    n = len(references)
    confusion = np.zeros((ids.max() + 1,) * 2, dtype=np.float64)
    np.add.at(confusion, (ids[:n], ids[n:]), 1)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    covariance = np.trace(confusion) * n - true_counts @ predicted_counts
    variance_predicted = n**2 - predicted_counts @ predicted_counts
    variance_true = n**2 - true_counts @ true_counts
    # A constant prediction (or reference) has no variance: the correlation is undefined and reported as 0.
    if variance_predicted * variance_true == 0:
        return 0.0
    return float(covariance / np.sqrt(variance_predicted * variance_true))


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson correlation of `(n,)` scores; nan when either input is constant."""
    x, y = predictions - predictions.mean(), references - references.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(np.clip(x @ y / denominator, -1.0, 1.0)) if denominator else float("nan")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `(n,)` values, ties sharing the mean of their ranks (scipy's `rankdata` "average")."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The tied values of group g occupy ranks ends[g] - counts[g] + 1 .. ends[g]; their mean is the rank given.
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman rank correlation of `(n,)` scores: Pearson correlation of the average ranks."""
    return pearson(average_ranks(predictions), average_ranks(references))


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "macro_f1": macro_f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearman,
}


def compute_glue_metrics(metric_names: Sequence[str], predictions, references) -> dict[str, float]:
    """Compute the named metrics, e.g. `compute_glue_metrics(task.metric_names, preds, labels)`.

    Args:
        metric_names: names among "accuracy", "f1", "macro_f1", "matthews_correlation", "pearson", "spearmanr".
        predictions: `(n,)` predicted label ids, or scores for pearson/spearmanr.
        references: `(n,)` gold label ids or scores.

    Returns:
        `{name: value}` with Python floats, in the order of `metric_names`.
    """
    unknown = [name for name in metric_names if name not in _METRICS]
    if unknown:
        raise ValueError(f"`metric_names` contains {unknown}; known metrics are {list(_METRICS)}.")
    predictions, references = np.asarray(predictions).reshape(-1), np.asarray(references).reshape(-1)
    if predictions.shape != references.shape or predictions.size == 0:
        raise ValueError(
            f"`predictions` has {predictions.size} values and `references` {references.size}; expected "
            "the same, non-zero number. Pass one prediction per reference."
        )
    if any(name in ("pearson", "spearmanr") for name in metric_names):
        predictions, references = predictions.astype(np.float64), references.astype(np.float64)
    return {name: _METRICS[name](predictions, references) for name in metric_names}


def build_compute_metrics(task: TaskSpec) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `Trainer` `compute_metrics` for the task: argmax of the logits (squeezed scores for regression) and the
    task's metrics; multi-label and token classification as in the module doc.

    The predictions may be logits or a tuple whose first element holds them (models that also return hidden states).
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        logits, references = np.asarray(logits), np.asarray(eval_prediction.label_ids)
        if task.is_token_classification:
            return token_classification_metrics(logits, references, task.label_names, "f1" in task.metric_names)
        if task.is_multi_label:
            return multi_label_metrics(logits, references)
        predictions = logits.reshape(-1) if task.is_regression else logits.argmax(axis=-1)
        return compute_glue_metrics(task.metric_names, predictions, references)

    return compute_metrics


def load_glue_metric(task_name: str) -> evaluate.EvaluationModule:
    """The packaged `evaluate` GLUE metric for `task_name`, loaded from this package (no network needed)."""
    return evaluate.load(str(GLUE_METRIC_DIR), get_task(task_name).name)
