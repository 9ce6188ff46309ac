"""A distillation method defined outside hf_distill, as a user would write one: KD plus a cosine term between the
student's and the teacher's logits. Importing this module registers it as `cosine_kd`."""

import torch.nn.functional as F

from hf_distill import DistillationMethod, register_method


@register_method
class CosineKD(DistillationMethod):
    name = "cosine_kd"
    summary = "KD plus one minus the cosine similarity of student and teacher logits."
    presets = {"alpha": 0.5, "temperature": 2.0}
    fields = ("temperature",)

    def loss_terms(self, inputs):
        terms = self.prediction_terms(inputs)  # KD and CE, as the built-in kd
        cosine = F.cosine_similarity(inputs.student_logits, inputs.teacher_logits.float(), dim=-1)
        terms["loss_cosine"] = (1.0, (1.0 - cosine).sum())
        return terms
