"""Distilling BERT into a BiLSTM (Tang et al. 2019, methods.md §4): `α·‖z_T − z_S‖²` on raw logits plus
`(1 − α)·CE`. Tang et al. write `α_Tang·CE + (1 − α_Tang)·MSE`: `alpha = 1 − α_Tang`."""

from .. import losses
from .base import DistillationMethod, LossTerms
from .registry import register_method


@register_method
class BiLSTMDistillation(DistillationMethod):
    name = "bilstm"
    summary = "Tang et al.: a small BiLSTM student matching the teacher's raw logits by squared error."
    # Pure logit MSE on the (augmented, teacher-labelled) transfer set, the paper's best; no temperature.
    presets = {"alpha": 1.0}
    fields = ()
    default_student = "bilstm"

    def distillation_term(self, student_logits, teacher_logits) -> LossTerms:
        return {"loss_mse": (self.args.alpha, losses.logit_mse_loss(student_logits, teacher_logits, reduction="sum"))}

    # Raw logits are matched whatever they feed (a softmax, or one sigmoid per label).
    multi_label_distillation_term = distillation_term
