"""GLUE metrics: values by hand, agreement with scikit-learn/scipy, the Trainer hook, the offline evaluate module."""

import math

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

from hf_distill.data import GLUE_TASKS, build_compute_metrics, compute_glue_metrics, get_task, load_glue_metric
from hf_distill.data.metrics import GLUE_METRIC_DIR

PREDICTIONS = [1, 1, 0, 0, 1]
REFERENCES = [1, 0, 0, 1, 1]  # tp 2, tn 1, fp 1, fn 1


def test_classification_metrics_by_hand():
    metrics = compute_glue_metrics(["accuracy", "f1", "matthews_correlation"], PREDICTIONS, REFERENCES)
    assert list(metrics) == ["accuracy", "f1", "matthews_correlation"]
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3 * 3 * 2 * 2)
    assert metrics["matthews_correlation"] == pytest.approx(1 / 6)
    assert all(type(value) is float for value in metrics.values())


@pytest.mark.parametrize(
    ("predictions", "references", "expected"),
    [
        ([1, 1, 1, 1], [1, 0, 1, 0], 0.0),  # constant predictions: undefined, reported as 0 (not nan)
        ([0, 0, 0, 0], [1, 0, 1, 0], 0.0),
        ([1, 0, 1, 0], [1, 1, 1, 1], 0.0),  # constant references
        ([1, 0, 1, 0], [1, 0, 1, 0], 1.0),
        ([0, 1, 0, 1], [1, 0, 1, 0], -1.0),
    ],
)
def test_matthews_correlation_edge_cases(predictions, references, expected):
    value = compute_glue_metrics(["matthews_correlation"], predictions, references)["matthews_correlation"]
    assert value == pytest.approx(expected) and not math.isnan(value)


def test_f1_without_positives_is_zero():
    assert compute_glue_metrics(["f1"], [0, 0, 0], [0, 0, 0]) == {"f1": 0.0}
    assert compute_glue_metrics(["f1"], [1, 1], [0, 0]) == {"f1": 0.0}


def test_correlations_by_hand():
    # dx = [-1, 0, 1], dy = [-1, 1, 0]: sum(dx dy) = 1, |dx| |dy| = 2.
    assert compute_glue_metrics(["pearson"], [1, 2, 3], [1, 3, 2]) == {"pearson": pytest.approx(0.5)}
    assert compute_glue_metrics(["pearson"], [1, 2, 3, 4], [8, 6, 4, 2]) == {"pearson": pytest.approx(-1.0)}
    monotone = compute_glue_metrics(["pearson", "spearmanr"], [1, 2, 3, 4], [1, 4, 9, 16])
    assert monotone["spearmanr"] == pytest.approx(1.0) and monotone["pearson"] < 0.99
    # Ties share the mean rank: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10).
    ties = compute_glue_metrics(["spearmanr"], [1.0, 2.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4])
    assert ties["spearmanr"] == pytest.approx(3 / math.sqrt(10))
    assert math.isnan(compute_glue_metrics(["pearson"], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_learn_and_scipy(seed):
    metrics_module = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 2, size=50)
    predictions = np.where(rng.random(50) < 0.7, references, 1 - references)
    ours = compute_glue_metrics(["accuracy", "f1", "matthews_correlation"], predictions, references)
    assert ours["accuracy"] == pytest.approx(metrics_module.accuracy_score(references, predictions))
    assert ours["f1"] == pytest.approx(metrics_module.f1_score(references, predictions))
    assert ours["matthews_correlation"] == pytest.approx(metrics_module.matthews_corrcoef(references, predictions))

    three_class = rng.integers(0, 3, size=60), rng.integers(0, 3, size=60)
    assert compute_glue_metrics(["matthews_correlation"], *three_class)["matthews_correlation"] == pytest.approx(
        metrics_module.matthews_corrcoef(three_class[1], three_class[0])
    )

    # Scores rounded to one decimal so Spearman meets many ties, as STS-B's 0-5 scores do.
    scores = np.round(rng.uniform(0, 5, size=40), 1)
    predicted = np.round(scores + rng.normal(0, 1.0, size=40), 1)
    ours = compute_glue_metrics(["pearson", "spearmanr"], predicted, scores)
    assert ours["pearson"] == pytest.approx(stats.pearsonr(predicted, scores)[0], abs=1e-12)
    assert ours["spearmanr"] == pytest.approx(stats.spearmanr(predicted, scores)[0], abs=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"`metric_names` contains \['bleu'\]"):
        compute_glue_metrics(["accuracy", "bleu"], [1], [1])
    with pytest.raises(ValueError, match="`predictions` has 2 values and `references` 3"):
        compute_glue_metrics(["accuracy"], [1, 0], [1, 0, 1])


def test_build_compute_metrics_classification():
    compute_metrics = build_compute_metrics(GLUE_TASKS["mrpc"])
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5], [1.0, 0.0]])  # argmax 1, 0, 1, 0
    labels = np.array([1, 0, 0, 0])
    expected = {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(0.75)}
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == expected
    # Models that also return hidden states hand the Trainer a tuple whose first element is the logits.
    with_hidden = (logits, np.zeros((4, 3, 8)))
    assert compute_metrics(EvalPrediction(predictions=with_hidden, label_ids=labels)) == expected


def test_build_compute_metrics_regression():
    compute_metrics = build_compute_metrics(get_task("STS-B"))
    predictions = np.array([[1.0], [2.0], [3.0]])
    metrics = compute_metrics(EvalPrediction(predictions=predictions, label_ids=np.array([1.0, 3.0, 2.0])))
    assert metrics == {"pearson": pytest.approx(0.5), "spearmanr": pytest.approx(0.5)}


@pytest.mark.parametrize(
    ("task_name", "predictions", "references"),
    [
        ("mrpc", PREDICTIONS, REFERENCES),
        ("cola", PREDICTIONS, REFERENCES),
        ("SST-2", PREDICTIONS, REFERENCES),
        ("stsb", [0.5, 2.25, 3.0, 4.75, 1.0], [1.0, 2.0, 3.5, 5.0, 0.0]),
    ],
)
def test_evaluate_module_loads_offline_and_matches(task_name, predictions, references):
    metric = load_glue_metric(task_name)
    assert isinstance(metric, evaluate.Metric)
    expected = compute_glue_metrics(get_task(task_name).metric_names, predictions, references)
    assert metric.compute(predictions=predictions, references=references) == expected
    # The same folder loads by path, the way a user without hf_distill's helper would.
    by_path = evaluate.load(str(GLUE_METRIC_DIR), get_task(task_name).name)
    assert by_path.compute(predictions=predictions, references=references) == expected


def test_evaluate_module_unknown_config():
    with pytest.raises(ValueError, match="`task_name` is 'squad'"):
        evaluate.load(str(GLUE_METRIC_DIR), "squad")
