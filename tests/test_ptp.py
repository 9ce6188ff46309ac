"""PTP labels (PeaKD): a hand-made prediction table, the threshold boundaries, and threshold resolution."""

import pytest
import torch

from hf_distill.data.ptp import (
    PTP_LABEL_NAMES,
    PTP_NUM_LABELS,
    PTP_THRESHOLDS,
    ptp_labels,
    resolve_ptp_thresholds,
)

T1, T2 = 0.8, 0.6  # RTE's thresholds

# (teacher logits, gold label, expected PTP label); c = max softmax is given for each row.
TABLE = [
    ([3.0, 0.0], 0, 0),  # c = 0.953: right, c > t1              -> right & confident
    ([1.0, 0.0], 0, 1),  # c = 0.731: right, c <= t1             -> right & unsure
    ([0.0, 3.0], 0, 2),  # c = 0.953: wrong, c > t2              -> wrong & confident
    ([0.2, 0.0], 1, 3),  # c = 0.550: wrong, c <= t2             -> wrong & unsure
    ([0.7, 0.0], 0, 1),  # c = 0.668: right, t2 < c <= t1        -> unsure, judged by t1
    ([0.7, 0.0], 1, 2),  # c = 0.668: the same prediction, wrong -> confident, judged by t2
]


def test_labels_on_a_hand_made_table():
    logits = torch.tensor([row[0] for row in TABLE])
    gold = torch.tensor([row[1] for row in TABLE])
    labels = ptp_labels(logits, gold, T1, T2)
    assert labels.dtype == torch.long
    assert labels.tolist() == [row[2] for row in TABLE]
    assert set(labels.tolist()) == set(range(PTP_NUM_LABELS)) and len(PTP_LABEL_NAMES) == PTP_NUM_LABELS


def test_labels_with_three_classes_and_half_precision():
    logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, 4.0, 0.0], [5.0, 0.0, 0.0]], dtype=torch.float16)
    # c = e²/(e²+2) = 0.787 <= 0.8; c = e⁴/(e⁴+2) = 0.965 > 0.8; c = 0.987 on a wrong prediction > 0.6
    assert ptp_labels(logits, torch.tensor([1, 1, 2]), T1, T2).tolist() == [1, 0, 2]


@pytest.mark.parametrize(("gold", "at_threshold", "above_threshold"), [(0, 1, 0), (1, 3, 2)])
def test_confidence_equal_to_the_threshold_is_unsure(gold, at_threshold, above_threshold):
    logits = torch.tensor([[1.3, 0.1]])  # predicts class 0: gold 0 is judged by t1, gold 1 by t2
    confidence = logits.softmax(-1).max()
    below = torch.nextafter(confidence, torch.tensor(0.0))  # the next float32 down, so c > threshold
    gold = torch.tensor([gold])
    for threshold, expected in [(confidence.item(), at_threshold), (below.item(), above_threshold)]:
        # The threshold that does not apply is set where it would flip the label if it were used.
        other = 0.01 if expected % 2 else 0.99
        t1, t2 = (threshold, other) if gold.item() == 0 else (other, threshold)
        assert ptp_labels(logits, gold, t1, t2).item() == expected


def test_labels_reject_bad_shapes():
    with pytest.raises(ValueError, match="`teacher_logits` has shape \\(4, 1\\)"):
        ptp_labels(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), T1, T2)
    with pytest.raises(ValueError, match="`labels` has shape \\(3,\\), expected \\(4,\\)"):
        ptp_labels(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), T1, T2)


def test_task_defaults():
    assert PTP_THRESHOLDS == {"rte": (0.8, 0.6), "mrpc": (0.95, 0.75), "sst2": (0.98, 0.8), "qnli": (0.98, 0.7)}
    assert resolve_ptp_thresholds("rte") == (0.8, 0.6)
    assert resolve_ptp_thresholds("MRPC") == (0.95, 0.75)
    assert resolve_ptp_thresholds("SST-2") == (0.98, 0.8)
    assert resolve_ptp_thresholds("qnli") == (0.98, 0.7)


def test_user_threshold_applies_to_both():
    assert resolve_ptp_thresholds("rte", 0.9) == (0.9, 0.9)
    assert resolve_ptp_thresholds("cola", 0.7) == (0.7, 0.7)
    assert resolve_ptp_thresholds(None, 0.5) == (0.5, 0.5)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.2, float("nan")])
def test_threshold_outside_open_unit_interval(threshold):
    with pytest.raises(ValueError, match=r"`ptp_threshold` is .*\(0, 1\)"):
        resolve_ptp_thresholds("rte", threshold)


@pytest.mark.parametrize("task", ["cola", None])
def test_task_without_default_needs_a_threshold(task):
    with pytest.raises(ValueError, match="has no PeaKD default.*Pass `--ptp_threshold`"):
        resolve_ptp_thresholds(task)
