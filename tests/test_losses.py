"""Each loss against a naive reference written straight from the paper's formula with Python loops and `math`,
deliberately independent of the implementation."""

import math

import pytest
import torch

from hf_distill import losses


def softmax(row, t=1.0):
    exps = [math.exp(v / t) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def naive_kd(student, teacher, t):
    """T² · (1/B) Σ_b Σ_c p_T (log p_T − log p_S)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row, t), softmax(t_row, t)
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    return t * t * total / len(student)


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("t", [1.0, 2.0, 10.0])
def test_kd_loss_matches_naive_formula(t):
    got = losses.kd_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), t)
    assert got.item() == pytest.approx(naive_kd(STUDENT, TEACHER, t), rel=1e-5)


def test_kd_loss_hand_computed_two_classes():
    # p_T = softmax([0, ln 3]) = (1/4, 3/4); p_S = (1/2, 1/2); KL = 1/4 ln(1/2) + 3/4 ln(3/2); T = 1.
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    got = losses.kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]]), 1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_direction_is_forward_kl():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]])
    reverse = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(p_S ‖ p_T), the wrong direction
    assert losses.kd_loss(student, teacher, 1.0).item() != pytest.approx(reverse, rel=1e-3)


def test_kd_loss_temperature_squared_scaling():
    # Both logits scaled by T: the distributions at temperature T are those at 1, so the loss is T² times larger.
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert losses.kd_loss(s * 4, t * 4, 4.0).item() == pytest.approx(16 * losses.kd_loss(s, t, 1.0).item(), rel=1e-5)


def test_kd_loss_zero_when_equal_and_reductions():
    s = torch.tensor(STUDENT)
    assert losses.kd_loss(s, s.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-7)
    per_example = losses.kd_loss(s, torch.tensor(TEACHER), 2.0, reduction="none")
    assert per_example.shape == (2,)
    assert losses.kd_loss(s, torch.tensor(TEACHER), 2.0, reduction="sum").item() == pytest.approx(
        per_example.sum().item()
    )
    with pytest.raises(ValueError, match="reduction"):
        losses.kd_loss(s, s, 1.0, reduction="batchmean")


def test_soft_cross_entropy_matches_formula():
    t = 2.0
    expected = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER):
        p_t, p_s = softmax(t_row, t), softmax(s_row, t)
        expected -= sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s))
    expected /= len(STUDENT)
    got = losses.soft_cross_entropy(torch.tensor(STUDENT), torch.tensor(TEACHER), t)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_logit_mse_is_squared_l2_norm_of_raw_logits():
    expected = sum(sum((a - b) ** 2 for a, b in zip(s, t)) for s, t in zip(STUDENT, TEACHER)) / 2
    assert losses.logit_mse_loss(torch.tensor(STUDENT), torch.tensor(TEACHER)).item() == pytest.approx(expected)
    # Raw logits, not probabilities: shifting both by a constant would not change softmax but does change this.
    shifted = losses.logit_mse_loss(torch.tensor(STUDENT) + 1, torch.tensor(TEACHER))
    assert shifted.item() != pytest.approx(expected)


def test_hard_label_loss_classification_ignores_minus_100_and_regression():
    logits = torch.tensor(STUDENT)
    labels = torch.tensor([1, -100])
    expected_first = -math.log(softmax(STUDENT[0])[1])
    per_example = losses.hard_label_loss(logits, labels, reduction="none")
    assert per_example[0].item() == pytest.approx(expected_first, rel=1e-6)
    assert per_example[1].item() == 0.0
    reg = losses.hard_label_loss(torch.tensor([[1.5], [0.0]]), torch.tensor([1.0, 2.0]))
    assert reg.item() == pytest.approx((0.25 + 4.0) / 2)


def naive_patient(student, teacher, normalize):
    """(1/(B·J·d)) Σ (h_S/‖h_S‖ − h_T/‖h_T‖)²."""
    total, count = 0.0, 0
    for s_ex, t_ex in zip(student, teacher):
        for s_vec, t_vec in zip(s_ex, t_ex):
            if normalize:
                ns, nt = math.sqrt(sum(v * v for v in s_vec)), math.sqrt(sum(v * v for v in t_vec))
                s_vec, t_vec = [v / ns for v in s_vec], [v / nt for v in t_vec]
            for a, b in zip(s_vec, t_vec):
                total += (a - b) ** 2
                count += 1
    return total / count


@pytest.mark.parametrize("normalize", [True, False])
def test_patient_loss_matches_naive_formula(normalize):
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 2, 5), torch.randn(3, 2, 5) * 4
    expected = naive_patient(student.tolist(), teacher.tolist(), normalize)
    assert losses.patient_loss(student, teacher, normalize=normalize).item() == pytest.approx(expected, rel=1e-5)


def test_patient_loss_normalisation_ignores_scale():
    torch.manual_seed(1)
    student = torch.randn(2, 3, 4)
    assert losses.patient_loss(student, student * 7.0).item() == pytest.approx(0.0, abs=1e-10)
    assert losses.patient_loss(student, student * 7.0, normalize=False).item() > 1.0


def test_hidden_mse_reference_mean_includes_padding_and_masked_option():
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # (B=1, L=3, d=2); last position is padding
    teacher = torch.tensor([[[1.0, 0.0], [3.0, 5.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # reference: mean over all L·d = 6 entries: (0 + 4 + 0 + 1 + 81 + 81) / 6
    assert losses.hidden_mse_loss(student, teacher).item() == pytest.approx(167 / 6)
    # masked: only the 2 real positions, 4 entries: (0 + 4 + 0 + 1) / 4
    assert losses.hidden_mse_loss(student, teacher, attention_mask=mask).item() == pytest.approx(5 / 4)


def naive_attention_loss(student, teacher, mask, masked_mean):
    """Reference rule: zero padded key columns in both, plain mean over H·L·L (or over valid pairs)."""
    total_per_example = []
    for b in range(len(student)):
        total, count = 0.0, 0
        for h in range(len(student[b])):
            for q in range(len(student[b][h])):
                for k in range(len(student[b][h][q])):
                    valid = mask[b][k] == 1 and (not masked_mean or mask[b][q] == 1)
                    diff = student[b][h][q][k] - teacher[b][h][q][k] if valid else 0.0
                    total += diff * diff
                    count += 1 if (valid or not masked_mean) else 0
        total_per_example.append(total / count)
    return sum(total_per_example) / len(total_per_example)


@pytest.mark.parametrize("masked_mean", [False, True])
def test_attention_score_loss_padding_rules(masked_mean):
    torch.manual_seed(2)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    # Padded keys hold the transformers-5 mask value: never subtract those.
    key_padded = (mask == 0)[:, None, None, :].expand_as(student)
    student[key_padded] = torch.finfo(torch.float32).min
    teacher[key_padded] = torch.finfo(torch.float32).min / 2
    expected = naive_attention_loss(student.tolist(), teacher.tolist(), mask.tolist(), masked_mean)
    got = losses.attention_score_loss(student, teacher, mask, masked_mean=masked_mean)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_attention_score_loss_half_precision_mask_values_do_not_overflow():
    mask = torch.tensor([[1, 0]])
    student = torch.tensor([[[[0.5, torch.finfo(torch.float16).min], [0.1, torch.finfo(torch.float16).min]]]])
    teacher = torch.tensor([[[[0.0, 100.0], [0.0, 3.0]]]])
    got = losses.attention_score_loss(student.half(), teacher.half(), mask)
    assert got.item() == pytest.approx((0.25 + 0.01) / 4, rel=1e-3)


def test_attention_score_loss_skips_pairs_outside_a_sliding_window():
    """A local (sliding-window) student layer mapped to a global teacher layer: the pairs the student masks were
    never computed, so they count as zero; the mean still runs over all L·L entries (the reference's)."""
    low = torch.finfo(torch.float32).min
    mask = torch.tensor([[1, 1]])
    student = torch.tensor([[[[1.0, low], [low, 2.0]]]])  # window of 1: each query sees only itself
    teacher = torch.tensor([[[[0.5, 3.0], [4.0, 1.0]]]])
    got = losses.attention_score_loss(student, teacher, mask)
    assert got.item() == pytest.approx((0.5**2 + 1.0**2) / 4)
    masked_mean = losses.attention_score_loss(student, teacher, mask, masked_mean=True)
    assert masked_mean.item() == pytest.approx((0.5**2 + 1.0**2) / 4)


def test_the_mean_of_no_rows_is_zero_not_nan():
    # A batch without a labelled token (all -100) reaches the logit terms as empty rows, as `hard_label_loss`'s do.
    empty = torch.zeros(0, 5)
    for loss in (losses.kd_loss(empty, empty, 2.0), losses.soft_cross_entropy(empty, empty),
                 losses.logit_mse_loss(empty, empty), losses.multi_label_kd_loss(empty, empty, 2.0)):
        assert loss.item() == 0.0
