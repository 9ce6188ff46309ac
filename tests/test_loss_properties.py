"""Property tests of `hf_distill.losses`: what must hold for any input, not only the hand-picked ones of
test_losses.py. Non-negativity, zero at equality, symmetry where the formula is symmetric, invariances (softmax
shift, L2 normalisation, masked padding) and the reductions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hf_distill import losses

FAST = settings(max_examples=30, deadline=None)
# float32 logits of realistic magnitude; the losses compute in float32, so comparisons allow its rounding.
VALUES = st.floats(-8.0, 8.0, allow_nan=False, width=32)
TEMPERATURES = st.sampled_from([0.5, 1.0, 2.0, 4.0, 10.0, 20.0])


@st.composite
def tensors(draw, shape):
    return torch.from_numpy(draw(arrays("float32", shape, elements=VALUES)))


@st.composite
def logit_pairs(draw, min_classes=2, max_classes=5):
    shape = (draw(st.integers(1, 6)), draw(st.integers(min_classes, max_classes)))
    return draw(tensors(shape)), draw(tensors(shape))


@st.composite
def masked_hidden(draw):
    """Hidden states `(B, L, d)` of two models, a mask with at least one real token per row, and padding to add."""
    batch, length, width = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    extra = draw(st.integers(1, 3))
    return (
        draw(tensors((batch, length, width))),
        draw(tensors((batch, length, width))),
        mask,
        draw(tensors((batch, extra, width))),
        draw(tensors((batch, extra, width))),
    )


def close(actual: torch.Tensor, expected: torch.Tensor | float, scale: float = 1.0) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype).expand_as(actual)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# -- KD --------------------------------------------------------------------------------------------------------------
@FAST
@given(logit_pairs(), TEMPERATURES)
def test_kd_loss_is_non_negative_and_zero_at_equality(pair, temperature):
    student, teacher = pair
    per_example = losses.kd_loss(student, teacher, temperature, reduction="none")
    assert per_example.shape == (student.size(0),)
    assert (per_example >= -1e-5 * temperature**2).all()
    assert losses.kd_loss(teacher, teacher, temperature, reduction="none").abs().max() <= 1e-6 * temperature**2


@FAST
@given(logit_pairs(), TEMPERATURES, st.floats(-50, 50, allow_nan=False), st.floats(-50, 50, allow_nan=False))
def test_kd_loss_ignores_a_constant_added_to_logits(pair, temperature, student_shift, teacher_shift):
    student, teacher = pair
    reference = losses.kd_loss(student, teacher, temperature, reduction="none")
    shifted = losses.kd_loss(student + student_shift, teacher + teacher_shift, temperature, reduction="none")
    close(shifted, reference, scale=temperature**2 + abs(student_shift) + abs(teacher_shift))


@FAST
@given(logit_pairs(), TEMPERATURES)
def test_soft_cross_entropy_is_kd_over_t_squared_plus_teacher_entropy(pair, temperature):
    student, teacher = pair
    soft_ce = losses.soft_cross_entropy(student, teacher, temperature, reduction="none")
    teacher_entropy = losses.soft_cross_entropy(teacher, teacher, temperature, reduction="none")
    kl = losses.kd_loss(student, teacher, temperature, reduction="none") / temperature**2
    close(soft_ce, teacher_entropy + kl, scale=10.0)
    assert (soft_ce >= teacher_entropy - 1e-5).all()


# -- squared errors --------------------------------------------------------------------------------------------------
@FAST
@given(logit_pairs(min_classes=1))  # one class: the regression form
def test_logit_mse_is_non_negative_zero_at_equality_and_symmetric(pair):
    student, teacher = pair
    forward = losses.logit_mse_loss(student, teacher, reduction="none")
    assert (forward >= 0).all()
    assert torch.equal(forward, losses.logit_mse_loss(teacher, student, reduction="none"))
    assert torch.equal(losses.logit_mse_loss(student, student, reduction="none"), torch.zeros(student.size(0)))


@FAST
@given(st.integers(1, 6).flatmap(lambda b: st.tuples(tensors((b, 3)), st.lists(st.integers(0, 2), min_size=b,
                                                                                 max_size=b))))
def test_hard_label_loss_is_non_negative(case):
    logits, labels = case
    assert (losses.hard_label_loss(logits, torch.tensor(labels), reduction="none") >= 0).all()


# -- PKD ------------------------------------------------------------------------------------------------------------
@st.composite
def cls_pairs(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 8)))
    # Vectors near zero make L2 normalisation ill-conditioned; PKD's [CLS] states are far from zero.
    offset = torch.ones(shape)
    return draw(tensors(shape)) + 9 * offset, draw(tensors(shape)) - 9 * offset


@FAST
@given(cls_pairs(), st.booleans())
def test_patient_loss_is_non_negative_zero_at_equality_and_symmetric(pair, normalize):
    student, teacher = pair
    forward = losses.patient_loss(student, teacher, normalize=normalize, reduction="none")
    assert (forward >= 0).all()
    assert torch.equal(forward, losses.patient_loss(teacher, student, normalize=normalize, reduction="none"))
    assert losses.patient_loss(student, student, normalize=normalize, reduction="none").abs().max() == 0


@FAST
@given(cls_pairs(), st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_normalized_patient_loss_ignores_positive_scaling(pair, student_scale, teacher_scale):
    student, teacher = pair
    reference = losses.patient_loss(student, teacher, normalize=True, reduction="none")
    scaled = losses.patient_loss(student * student_scale, teacher * teacher_scale, normalize=True, reduction="none")
    close(scaled, reference)
    # Normalised vectors are at most 2 apart, so each squared difference is at most 4.
    assert (reference <= 4 + 1e-5).all()


# -- TinyBERT ------------------------------------------------------------------------------------------------------
@FAST
@given(masked_hidden())
def test_hidden_mse_is_non_negative_zero_at_equality_and_symmetric(case):
    student, teacher, mask, _, _ = case
    for attention_mask in (None, mask):
        forward = losses.hidden_mse_loss(student, teacher, attention_mask, reduction="none")
        assert (forward >= 0).all()
        assert torch.equal(forward, losses.hidden_mse_loss(teacher, student, attention_mask, reduction="none"))
        assert losses.hidden_mse_loss(student, student, attention_mask, reduction="none").abs().max() == 0


@FAST
@given(masked_hidden())
def test_masked_hidden_mse_ignores_added_padding(case):
    student, teacher, mask, student_pad, teacher_pad = case
    reference = losses.hidden_mse_loss(student, teacher, mask, reduction="none")
    padded_mask = torch.cat([mask, torch.zeros(mask.size(0), student_pad.size(1), dtype=mask.dtype)], dim=1)
    padded = losses.hidden_mse_loss(
        torch.cat([student, student_pad], dim=1), torch.cat([teacher, teacher_pad], dim=1), padded_mask, "none"
    )
    close(padded, reference, scale=256.0)


@st.composite
def attention_cases(draw):
    """Scores `(B, H, L, L)` of two models, a mask with at least one real token per row, and the padded length."""
    batch, heads, length = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    padded_length = length + draw(st.integers(1, 3))
    shape = (batch, heads, padded_length, padded_length)
    return draw(tensors(shape)), draw(tensors(shape)), mask, length


@FAST
@given(attention_cases(), st.booleans())
def test_attention_loss_is_non_negative_zero_at_equality_and_symmetric(case, masked_mean):
    student, teacher, mask, length = case
    student, teacher = student[..., :length, :length], teacher[..., :length, :length]
    forward = losses.attention_score_loss(student, teacher, mask, masked_mean=masked_mean, reduction="none")
    assert (forward >= 0).all()
    backward = losses.attention_score_loss(teacher, student, mask, masked_mean=masked_mean, reduction="none")
    assert torch.equal(forward, backward)
    same = losses.attention_score_loss(student, student, mask, masked_mean=masked_mean, reduction="none")
    assert same.abs().max() == 0


@FAST
@given(attention_cases())
def test_masked_mean_attention_loss_ignores_added_padding(case):
    student, teacher, mask, length = case
    padded_mask = torch.cat([mask, torch.zeros(mask.size(0), student.size(-1) - length, dtype=mask.dtype)], dim=1)
    reference = losses.attention_score_loss(
        student[..., :length, :length], teacher[..., :length, :length], mask, masked_mean=True, reduction="none"
    )
    padded = losses.attention_score_loss(student, teacher, padded_mask, masked_mean=True, reduction="none")
    close(padded, reference, scale=256.0)


@FAST
@given(attention_cases(), st.floats(-1e4, 1e4, allow_nan=False))
def test_reference_attention_loss_ignores_values_at_padded_keys(case, fill):
    """The reference mean keeps padded query rows but zeroes padded key columns: their values cannot matter, even
    the `finfo.min` that transformers 5 puts there."""
    student, teacher, _, length = case
    padded_mask = torch.zeros(student.size(0), student.size(-1), dtype=torch.long)
    padded_mask[:, :length] = 1
    reference = losses.attention_score_loss(student, teacher, padded_mask, reduction="none")
    for value in (fill, torch.finfo(torch.float32).min):
        student_filled, teacher_filled = student.clone(), teacher.clone()
        student_filled[..., length:] = value
        teacher_filled[..., length:] = -value
        close(losses.attention_score_loss(student_filled, teacher_filled, padded_mask, reduction="none"), reference)


# -- reductions -----------------------------------------------------------------------------------------------------
@FAST
@given(logit_pairs(), TEMPERATURES)
def test_reductions_are_sum_and_mean_of_per_example_values(pair, temperature):
    student, teacher = pair
    per_example = losses.kd_loss(student, teacher, temperature, reduction="none")
    close(losses.kd_loss(student, teacher, temperature, reduction="sum"), per_example.sum(), scale=temperature**2)
    close(losses.kd_loss(student, teacher, temperature, reduction="mean"), per_example.mean(), scale=temperature**2)


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="`reduction` must be 'mean', 'sum' or 'none', got 'max'"):
        losses.logit_mse_loss(torch.zeros(2, 2), torch.zeros(2, 2), reduction="max")
