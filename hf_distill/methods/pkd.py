"""Patient KD (Sun et al. 2019, methods.md §2): KD plus `β · mean((h_S/‖h_S‖ − h_T/‖h_T‖)²)` over the [CLS] states
of mapped intermediate layers (PKD-Skip `I(j) = j·N/M`, PKD-Last `I(j) = N − M + j`, or an explicit map)."""

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging

from .. import losses
from ..layer_mapping import LayerMap, num_executed_layers, parse_layer_list, pkd_layer_map
from .base import DistillationMethod, LossInputs, LossTerms
from .projections import WidthProjections, load_projections, save_projections
from .registry import register_method

logger = logging.get_logger(__name__)

PROJECTION_FILE = "pkd_projection.safetensors"


@dataclass
class PKDSettings:
    """The `DistillationConfig` fields of PKD's patient term (`DistillationConfig` inherits them; pkd and peakd
    read them, other methods refuse them when set)."""

    pkd_strategy: str = field(
        default="skip",
        metadata={
            "help": "PKD-Skip maps student layer j to teacher layer j·N/M; PKD-Last to N − M + j.",
            "choices": ["skip", "last"],
        },
    )
    pkd_layer_map: str | None = field(
        default=None,
        metadata={
            "help": "Explicit teacher layers (1-based) for student layers 1 … M−1, e.g. '2,4'; overrides "
            "`pkd_strategy`.",
        },
    )
    normalize_patience: bool = field(
        default=True,
        metadata={
            "help": "L2-normalise the [CLS] vectors before PKD's patient loss (the paper's form).",
        },
    )

    def validate_pkd_settings(self) -> None:
        if self.pkd_strategy not in ("skip", "last"):
            raise ValueError(f"`pkd_strategy` must be 'skip' or 'last', got {self.pkd_strategy!r}.")
        parse_layer_list(self.pkd_layer_map, "pkd_layer_map")


PATIENT_FIELDS = ("temperature", "beta", *(spec.name for spec in dataclass_fields(PKDSettings)))


def check_patient_student(teacher: PreTrainedModel, student: nn.Module, method: str) -> None:
    """The patient loss compares teacher and student [CLS] vectors layer by layer: the student must be a
    transformer with at least one intermediate layer (of another width, through `PKD.projection`)."""
    config = getattr(student, "config", None)
    layers = getattr(config, "num_executed_layers", None) or getattr(config, "num_hidden_layers", None)
    if layers is None:
        raise ValueError(
            f"`method`={method!r} matches intermediate [CLS] states, but the student is a {type(student).__name__}, "
            "which has no transformer layers. Use `method='kd'` (or the BiLSTM's own method) for this student."
        )
    if layers < 2:
        raise ValueError(
            f"`method`={method!r} matches student layers 1 … M−1 to the teacher, but the student runs {layers} "
            "layer, so the patient term would silently vanish. Use a student with 2 or more layers, or `method='kd'`."
        )


@register_method
class PKD(DistillationMethod):
    name = "pkd"
    summary = "Patient KD: KD plus the distance between normalised [CLS] states of mapped intermediate layers."
    presets = {"alpha": 0.7, "temperature": 10.0, "beta": 500.0}
    fields = PATIENT_FIELDS
    # The paper's [CLS] patience, per example also on token tasks, where the per-token KD term is the prediction one.
    example_terms = ("loss_pkd",)

    def __init__(self, args, student: nn.Module, teacher: PreTrainedModel):
        super().__init__(args, student, teacher)
        check_patient_student(teacher, student, args.method)
        self.layer_map: LayerMap = pkd_layer_map(
            args.pkd_strategy,
            num_teacher_layers=num_executed_layers(teacher),
            num_student_layers=num_executed_layers(student),
            teacher_layers=parse_layer_list(args.pkd_layer_map, "pkd_layer_map"),
        )
        logger.info("PKD layer map (student layer -> teacher layer): %s", self.layer_map)
        # The paper's students have the teacher's width. Another width (a student of its own config, often with its
        # own tokenizer) maps each student [CLS] state through one learned W_p (d_S -> d_T) before normalising,
        # trained with the student like TinyBERT's W_h and never saved in it.
        self.projection: WidthProjections | None = None
        student_width, teacher_width = student.config.hidden_size, teacher.config.hidden_size
        if student_width != teacher_width:
            self.projection = WidthProjections(
                student_width, teacher_width, [], shared=True,
                initializer_range=getattr(student.config, "initializer_range", 0.02),
            ).to(args.device)
            logger.info("PKD: student width %d, teacher width %d: [CLS] states go through a learned projection "
                        "(saved in checkpoints as %s, not in the student).", student_width, teacher_width,
                        PROJECTION_FILE)

    def cached_teacher_layers(self) -> list[int]:
        return [teacher_layer for _, teacher_layer in self.layer_map]

    def loss_terms(self, inputs: LossInputs) -> LossTerms:
        terms = self.prediction_terms(inputs)
        student_states, teacher_states = inputs.student_outputs.hidden_states, inputs.teacher_outputs.hidden_states
        student_cls = torch.stack([student_states[s][:, 0] for s, _ in self.layer_map], dim=1)
        teacher_cls = torch.stack([teacher_states[t][:, 0] for _, t in self.layer_map], dim=1)
        if self.projection is not None:
            student_cls = self.projection(student_cls, 0)
        normalize = self.args.normalize_patience
        terms["loss_pkd"] = (self.args.beta, losses.patient_loss(student_cls, teacher_cls, normalize, reduction="sum"))
        return terms

    # -- W_p (another student width only): trained with the student, saved in checkpoints, never in the student --
    def extra_module(self) -> nn.Module | None:
        return self.projection

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        save_projections(self.projection, checkpoint_dir, PROJECTION_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        load_projections(self.projection, checkpoint_dir, PROJECTION_FILE, self.args.device,
                         "a PKD run whose student has another width than the teacher")
