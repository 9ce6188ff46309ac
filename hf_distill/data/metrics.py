"""GLUE metrics in plain numpy, so evaluation needs neither the network nor scikit-learn.

Definitions follow the GLUE benchmark and give the values of scikit-learn / scipy: accuracy; binary F1 of class 1
(MRPC, QQP); Matthews correlation (CoLA; 0.0 when predictions or references are constant, as in scikit-learn);
Pearson and Spearman correlation (STS-B; nan when an input is constant, as in scipy).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

from .glue import TaskSpec, get_task

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
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearman,
}


def compute_glue_metrics(metric_names: Sequence[str], predictions, references) -> dict[str, float]:
    """Compute the named metrics, e.g. `compute_glue_metrics(task.metric_names, preds, labels)`.

    Args:
        metric_names: names among "accuracy", "f1", "matthews_correlation", "pearson", "spearmanr".
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
    """A `Trainer` `compute_metrics`: argmax of the logits (squeezed scores for regression), then the task's metrics.

    The predictions may be `(batch, num_labels)` logits or a tuple whose first element holds them (models that
    also return hidden states).
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = np.asarray(logits)
        predictions = logits.reshape(-1) if task.is_regression else logits.argmax(axis=-1)
        return compute_glue_metrics(task.metric_names, predictions, eval_prediction.label_ids)

    return compute_metrics


def load_glue_metric(task_name: str) -> evaluate.EvaluationModule:
    """The packaged `evaluate` GLUE metric for `task_name`, loaded from this package (no network needed)."""
    return evaluate.load(str(GLUE_METRIC_DIR), get_task(task_name).name)
