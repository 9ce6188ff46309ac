"""TinyBERT task distillation (Jiao et al. 2020, `shared/docs/methods.md` §3): attention-score capture, the `W_h`
projections, the loss terms of both stages and the two stages (run by `TinyBERT.train` with the trainer class it is
given, so this module never imports the trainer).

Stage 1 matches intermediate layers: `Σ_{m=0..M} MSE(H_S,m W_h, H_T,g(m)) + Σ_{m=1..M} MSE(A_S,m, A_T,g(m))` with `A`
the pre-softmax attention scores `QKᵀ/√d_head + mask`. Stage 2 matches predictions:
`mean_b Σ_c −softmax(z_T/t)_c · log_softmax(z_S/t)_c`.

Attention scores are read through transformers' attention interface: while `capture_attention(model)` is active,
the model runs `_capturing_attention`, an eager attention that hands each layer's scores to the capture. Outside it
(stage 2, evaluation of other methods, anything else) the model keeps its own implementation, SDPA by default.
"""

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel, TrainingArguments
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.modeling_utils import unwrap_model
from transformers.utils import logging

from .. import losses
from ..layer_mapping import (
    LayerMap,
    explicit_map,
    num_executed_layers,
    parse_layer_list,
    uniform_map,
    validate_layer_map,
)
from .base import DistillationMethod, LossInputs, LossTerms
from .projections import WidthProjections, load_projections, save_projections
from .registry import register_method

if TYPE_CHECKING:
    from transformers import Trainer
    from transformers.trainer_utils import TrainOutput

logger = logging.get_logger(__name__)

CAPTURE_ATTENTION_IMPLEMENTATION = "hf_distill_capture"
PROJECTIONS_FILE = "tinybert_projections.safetensors"
ATTENTION_TARGETS = ("scores", "probs")

# -- settings ---------------------------------------------------------------------------------------------------


@dataclass
class TinyBERTSettings:
    """The `DistillationConfig` fields only TinyBERT reads (`DistillationConfig` inherits them; other methods refuse
    them when set)."""

    tinybert_stage: int | None = field(
        default=None,
        metadata={
            "help": "1: intermediate layers (embeddings, hidden states, attention scores); 2: prediction layer. "
            "Unset: run_distill.py / `hf_distill.pipeline.train_student` run stage 1 then 2 (a DistillationTrainer "
            "needs 1 or 2). "
            "A config with a stage trains with that stage's learning rate, epochs and schedule.",
            "choices": [1, 2],
        },
    )
    tinybert_layer_map: str | None = field(
        default=None,
        metadata={
            "help": "Teacher layers (1-based) for student layers 1 … M, e.g. '3,6,9,12'. Default: g(m) = m·N/M. "
            "The embeddings always map to the teacher's.",
        },
    )
    tinybert_attention_target: str = field(
        default="scores",
        metadata={
            "help": "Attention maps compared in stage 1: pre-softmax scores QKᵀ/√d (the paper) or probabilities.",
            "choices": ["scores", "probs"],
        },
    )
    tinybert_use_projection: str = field(
        default="auto",
        metadata={
            "help": "Learned W_h from the student to the teacher width: auto = only when the widths differ.",
            "choices": ["auto", "true", "false"],
        },
    )
    tinybert_share_projection: bool = field(
        default=True,
        metadata={
            "help": "One W_h for embeddings and all layers (TinyBERT v1); False: one per layer.",
        },
    )
    tinybert_hidden_mask: bool = field(
        default=True,
        metadata={
            "help": "Average the hidden-state MSE over real tokens only (default), so an example's loss does not "
            "depend on how far its batch is padded. False: over all positions, as the reference, which pads every "
            "batch to a fixed length (add `--pad_to_max_length` for its exact numbers).",
        },
    )
    tinybert_attention_masked_mean: bool = field(
        default=True,
        metadata={
            "help": "Average the attention MSE over valid (query, key) pairs only (default; independent of batch "
            "padding). False: zero padded keys and average over all L·L entries, as the reference (with "
            "`--pad_to_max_length` for its exact numbers).",
        },
    )
    tinybert_stage1_epochs: float = field(
        default=10.0, metadata={"help": "Stage-1 epochs (paper: 10–50 by task)."}
    )
    tinybert_stage1_learning_rate: float = field(
        default=5e-5, metadata={"help": "Stage-1 learning rate, constant."}
    )
    tinybert_stage2_epochs: float = field(default=3.0, metadata={"help": "Stage-2 epochs."})
    tinybert_stage2_learning_rate: float = field(
        default=3e-5, metadata={"help": "Stage-2 peak learning rate."}
    )
    tinybert_stage2_warmup: float = field(
        default=0.1,
        metadata={
            "help": "Stage-2 linear warm-up: a ratio of the steps in [0, 1), or a step count.",
        },
    )

    def validate_tinybert_settings(self) -> None:
        parse_layer_list(self.tinybert_layer_map, "tinybert_layer_map")
        if self.tinybert_stage not in (None, 1, 2):
            raise ValueError(f"`tinybert_stage` must be 1, 2 or unset (both stages), got {self.tinybert_stage!r}.")
        for name in ("tinybert_stage1_epochs", "tinybert_stage1_learning_rate", "tinybert_stage2_epochs",
                     "tinybert_stage2_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}.")
        for name, choices in (("tinybert_attention_target", ATTENTION_TARGETS),
                              ("tinybert_use_projection", ("auto", "true", "false"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {getattr(self, name)!r}.")
        if self.tinybert_stage2_warmup < 0:
            raise ValueError(
                f"`tinybert_stage2_warmup` must be ≥ 0 (a ratio or steps), got {self.tinybert_stage2_warmup}."
            )


TINYBERT_FIELDS = tuple(spec.name for spec in dataclasses.fields(TinyBERTSettings))

# -- attention capture ---------------------------------------------------------------------------------------------

# Active captures keyed by the id of the model config, which every attention module of a model shares: teacher and
# student can be captured at the same time without mixing their maps.
_ACTIVE_CAPTURES: dict[int, tuple[str, list[torch.Tensor]]] = {}


def _capturing_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention that records `QKᵀ·scaling + mask` or its softmax, `(B, H, L, L)`, in the active capture.

    Query, key, value: `(B, H, L, d_head)`; returns the output `(B, L, H, d_head)` and the probabilities, like
    transformers' `eager_attention_forward`.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1)
    capture = _ACTIVE_CAPTURES.get(id(getattr(module, "config", None)))
    if capture is not None:
        target, maps = capture
        maps.append(scores if target == "scores" else probs)
    attended = torch.matmul(nn.functional.dropout(probs, p=dropout, training=module.training), value)
    return attended.transpose(1, 2).contiguous(), probs


AttentionInterface.register(CAPTURE_ATTENTION_IMPLEMENTATION, _capturing_attention)
# Models build their additive (B, 1, L, L) mask for the configured implementation: ours takes eager's.
ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_ATTENTION_IMPLEMENTATION, eager_mask)


@contextmanager
def capture_attention(model: nn.Module, target: str = "scores") -> Iterator[list[torch.Tensor]]:
    """Collect the attention maps of every forward pass of `model` run inside the block.

    Yields a list that fills with one `(B, H, L, L)` tensor per executed transformer layer, in execution order:
    pre-softmax scores `QKᵀ/√d_head + mask` for `target="scores"` (masked keys hold `finfo(dtype).min`), softmax
    probabilities for `"probs"`. The tensors keep their autograd graph. The model must route attention through
    transformers' `AttentionInterface` (BERT, RoBERTa, ELECTRA, ... in transformers 5).
    """
    if target not in ATTENTION_TARGETS:
        raise ValueError(f"`tinybert_attention_target` must be one of {ATTENTION_TARGETS}, got {target!r}.")
    config = unwrap_model(model).config
    if id(config) in _ACTIVE_CAPTURES:
        raise RuntimeError("capture_attention is already active for this model; nested captures would mix maps.")
    maps: list[torch.Tensor] = []
    previous = config._attn_implementation
    config._attn_implementation = CAPTURE_ATTENTION_IMPLEMENTATION
    _ACTIVE_CAPTURES[id(config)] = (target, maps)
    try:
        yield maps
    finally:
        del _ACTIVE_CAPTURES[id(config)]
        config._attn_implementation = previous


# -- projections ---------------------------------------------------------------------------------------------------


# -- layer map and checks ------------------------------------------------------------------------------------------


def tinybert_layer_map(
    num_student_layers: int, num_teacher_layers: int, teacher_layers: str | list[int] | None = None
) -> LayerMap:
    """`[(0, 0), (1, g(1)), …, (M, g(M))]`: uniform `g(m) = m·N/M`, or the explicit teacher layers of student layers
    `1 … M` (`teacher_layers`, e.g. "3,6,9,12"). The embedding output always maps to the teacher's."""
    explicit = parse_layer_list(teacher_layers, "tinybert_layer_map")
    if explicit is None:
        return uniform_map(num_teacher_layers, num_student_layers)
    layer_map = [(0, 0), *explicit_map(explicit, range(1, num_student_layers + 1), "tinybert_layer_map")]
    validate_layer_map(layer_map, num_student_layers, num_teacher_layers, "tinybert_layer_map")
    if 0 in explicit:
        raise ValueError(
            f"`tinybert_layer_map`={teacher_layers!r} maps a transformer layer to teacher layer 0, the embedding "
            f"output, which has no attention map. Use teacher layers in [1, {num_teacher_layers}]."
        )
    return layer_map


def check_attention_heads(student: PreTrainedModel, teacher: PreTrainedModel) -> None:
    """TinyBERT's attention loss compares maps head by head, so the head counts must match."""
    student_heads, teacher_heads = student.config.num_attention_heads, teacher.config.num_attention_heads
    if student_heads != teacher_heads:
        raise ValueError(
            f"TinyBERT's attention loss compares attention maps head by head, but the student has "
            f"`num_attention_heads`={student_heads} and the teacher {teacher_heads}. Build the student with "
            f'`--student_config \'{{"num_attention_heads": {teacher_heads}, ...}}\'` (hidden_size a multiple of '
            f"{teacher_heads}), as TinyBERT-4 keeps BERT's 12 heads."
        )


def resolve_use_projection(setting: str, student_width: int, teacher_width: int) -> bool:
    """`tinybert_use_projection`: "auto" projects only a narrower/wider student; "true" always; "false" never."""
    if setting not in ("auto", "true", "false"):
        raise ValueError(f"`tinybert_use_projection` must be 'auto', 'true' or 'false', got {setting!r}.")
    if setting == "false" and student_width != teacher_width:
        raise ValueError(
            f"`tinybert_use_projection`='false', but the student's hidden size is {student_width} and the teacher's "
            f"{teacher_width}: their hidden states cannot be compared without `W_h`. Use 'auto' (or 'true'), or a "
            f"student with hidden_size={teacher_width}."
        )
    return setting == "true" or (setting == "auto" and student_width != teacher_width)


# -- the method -------------------------------------------------------------------------------------------------


@register_method
class TinyBERT(DistillationMethod):
    """TinyBERT task distillation (stage in `args.tinybert_stage`; `train` runs both).

    Stage 1 owns the layer map and the `W_h` projections; its terms are `loss_emb`, `loss_hidden` (summed over mapped
    layers 1 … M) and `loss_attn` (same), each a per-example value summed over the batch. Stage 2 is
    `loss_pred` (soft cross-entropy at `args.temperature`, preset 1) weighted by `args.alpha` (preset 1) and, when
    `alpha < 1`, `loss_ce`; on a regression task it is the squared error to the gold score, as the reference.
    """

    name = "tinybert"
    summary = (
        "TinyBERT task distillation: embeddings, hidden states (through a learned W_h) and attention scores, then "
        "the prediction layer."
    )
    presets = {"alpha": 1.0, "temperature": 1.0}
    # Its stage-1 terms read full hidden states and attention maps, which are too large to cache per example.
    cacheable = False
    fields = ("temperature", *TINYBERT_FIELDS)
    # Stage 1 matches every token's states per example (token tasks too); stage 2's prediction terms are per
    # prediction (per labelled token for token classification).
    example_terms = ("loss_emb", "loss_hidden", "loss_attn")
    reads_aligned_tokens = True

    def __init__(self, args: TrainingArguments, student: PreTrainedModel, teacher: PreTrainedModel):
        super().__init__(args, student, teacher)
        if args.tinybert_stage not in (1, 2):
            raise ValueError(
                f"`tinybert_stage` must be 1 (intermediate layers) or 2 (prediction layer) for a DistillationTrainer, "
                f"got {args.tinybert_stage!r}. Run both stages with `hf_distill.methods.tinybert.TinyBERT.train` or "
                "`run_distill.py --method tinybert`."
            )
        self.stage = args.tinybert_stage
        self.layer_map: LayerMap = []
        self.projections: WidthProjections | None = None
        if self.stage == 2:
            return
        if args.gradient_checkpointing or getattr(student, "is_gradient_checkpointing", False):
            raise ValueError(
                "`gradient_checkpointing` does not work in TinyBERT stage 1: the attention scores are read in the "
                "forward pass, which checkpointing recomputes with the model's own attention. Drop it for stage 1 "
                "(stage 2 supports it); TinyBERT students are small."
            )
        check_attention_heads(student, teacher)
        self.layer_map = tinybert_layer_map(
            num_executed_layers(student), num_executed_layers(teacher), args.tinybert_layer_map
        )
        logger.info("TinyBERT layer map (student layer -> teacher layer, 0 = embeddings): %s", self.layer_map)
        student_width, teacher_width = student.config.hidden_size, teacher.config.hidden_size
        if resolve_use_projection(args.tinybert_use_projection, student_width, teacher_width):
            self.projections = WidthProjections(
                student_width,
                teacher_width,
                [student_layer for student_layer, _ in self.layer_map],
                shared=args.tinybert_share_projection,
                initializer_range=getattr(student.config, "initializer_range", 0.02),
            ).to(args.device)

    # -- configuration ----------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, args: TrainingArguments) -> None:
        apply_stage_schedule(args)
        if args.deepspeed and args.tinybert_stage != 2 and args.tinybert_use_projection != "false":
            raise ValueError(
                "`method`='tinybert' stage 1 trains W_h projections that live beside the student, and a DeepSpeed "
                "engine only updates the model it wraps. Run stage 1 (`--tinybert_stage 1`) without `deepspeed` "
                "(torchrun/accelerate with DDP or FSDP), then stage 2 (`--tinybert_stage 2`) with it."
            )

    @classmethod
    def effective_settings(cls, args: TrainingArguments) -> dict[str, Any]:
        return {"tinybert_stages": stage_settings(args)}

    # -- stage 1: attention capture and intermediate terms ----------------------------------------------------
    @property
    def needs_hidden_states(self) -> bool:
        return self.stage == 1

    def capture(self, model: nn.Module):
        if self.stage == 1:
            return capture_attention(model, self.args.tinybert_attention_target)
        return super().capture(model)

    def loss_terms(self, inputs: LossInputs) -> LossTerms:
        if self.stage == 1:
            return self.intermediate_terms(inputs)
        if inputs.is_regression:
            return self.regression_terms(inputs)
        return self.prediction_terms(inputs)

    def regression_terms(self, inputs: LossInputs) -> LossTerms:
        """Stage 2 on a regression task (STS-B), as the reference: the squared error to the gold score (`loss_ce`,
        over the rows that have one), so `alpha` has no effect here. Rows without one (augmented rows, whose copied
        score may be wrong) fit the teacher's prediction instead (`loss_mse`): they would otherwise train nothing."""
        if inputs.labels is None:
            raise ValueError(
                "TinyBERT stage 2 on a regression task trains on the gold scores (MSE, as the reference), but the "
                "batch has no `labels`. Give the training set a `labels` column."
            )
        student_logits, teacher_logits = inputs.student_logits, inputs.teacher_logits
        unlabelled = (inputs.labels == -100).unsqueeze(-1)
        to_teacher = losses.logit_mse_loss(
            torch.where(unlabelled, student_logits.float(), 0.0), torch.where(unlabelled, teacher_logits.float(), 0.0),
            reduction="sum",
        )
        return {
            "loss_ce": (1.0, losses.hard_label_loss(student_logits, inputs.labels, reduction="sum")),
            "loss_mse": (1.0, to_teacher),
        }

    def distillation_term(self, student_logits, teacher_logits) -> LossTerms:
        # Stage 2: the paper's soft cross-entropy, no T² factor.
        prediction = losses.soft_cross_entropy(student_logits, teacher_logits, self.args.temperature, reduction="sum")
        return {"loss_pred": (self.args.alpha, prediction)}

    def intermediate_terms(self, inputs: LossInputs) -> LossTerms:
        """Stage 1: `{name: (weight, batch sum)}` from both models' hidden states and captured attention maps."""
        student_outputs, teacher_outputs = inputs.student_outputs, inputs.teacher_outputs
        for name, maps, outputs in (
            ("student", inputs.student_captures, student_outputs),
            ("teacher", inputs.teacher_captures, teacher_outputs),
        ):
            if len(maps) != len(outputs.hidden_states) - 1:
                raise ValueError(
                    f"TinyBERT read {len(maps)} attention maps from the {name}, which ran "
                    f"{len(outputs.hidden_states) - 1} layers: its attention does not go through transformers' "
                    "`AttentionInterface`. Use a BERT-family model of transformers 5 (BertForSequenceClassification…)."
                )
        attention_mask = inputs.attention_mask
        hidden_mask = attention_mask if self.args.tinybert_hidden_mask else None
        hidden_terms, attention_terms = [], []  # the map starts with the embeddings, (0, 0)
        for student_layer, teacher_layer in self.layer_map:
            student_hidden = student_outputs.hidden_states[student_layer]
            if self.projections is not None:
                student_hidden = self.projections(student_hidden, student_layer)
            hidden_terms.append(
                losses.hidden_mse_loss(
                    student_hidden, teacher_outputs.hidden_states[teacher_layer], hidden_mask, reduction="sum"
                )
            )
            if student_layer > 0:
                attention_terms.append(
                    losses.attention_score_loss(
                        inputs.student_captures[student_layer - 1],
                        inputs.teacher_captures[teacher_layer - 1],
                        attention_mask,
                        masked_mean=self.args.tinybert_attention_masked_mean,
                        reduction="sum",
                    )
                )
        return {
            "loss_emb": (1.0, hidden_terms[0]),
            "loss_hidden": (1.0, torch.stack(hidden_terms[1:]).sum()),
            "loss_attn": (1.0, torch.stack(attention_terms).sum()),
        }

    # -- W_h: trained with the student, saved in checkpoints, never in the student --------------------------
    def extra_module(self) -> nn.Module | None:
        return self.projections

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        save_projections(self.projections, checkpoint_dir, PROJECTIONS_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        load_projections(self.projections, checkpoint_dir, PROJECTIONS_FILE, self.args.device,
                         "a TinyBERT stage-1 run with `W_h` projections")

    # -- both stages ------------------------------------------------------------------------------------------
    @classmethod
    def train(cls, trainer_class, student, teacher, args, **trainer_kwargs):
        """Stage 1 then stage 2, or only `args.tinybert_stage`: see `train_stages`."""
        return train_stages(trainer_class, student, teacher, args, **trainer_kwargs)


# -- the two stages ------------------------------------------------------------------------------------------------

# TrainingArguments fields each stage sets itself, and where the user sets them instead.
_STAGE_OWNED_FIELDS = {
    "learning_rate": "`tinybert_stage1_learning_rate` / `tinybert_stage2_learning_rate`",
    "num_train_epochs": "`tinybert_stage1_epochs` / `tinybert_stage2_epochs`",
    "warmup_steps": "`tinybert_stage2_warmup` (stage 1 has no warm-up)",
    "lr_scheduler_type": "nothing: stage 1 is constant and stage 2 linear, as in the paper",
}


def stage_schedule(args: TrainingArguments, stage: int) -> dict[str, Any]:
    """The TrainingArguments values of one stage (methods.md §3): stage 1 `tinybert_stage1_learning_rate` (5e-5),
    `tinybert_stage1_epochs` (10), constant, no warm-up, no best-model reload (its logits are not trained); stage 2
    `tinybert_stage2_learning_rate` (3e-5), `tinybert_stage2_epochs` (3), linear decay after
    `tinybert_stage2_warmup` (10 %)."""
    if stage == 1:
        return dict(
            learning_rate=args.tinybert_stage1_learning_rate,
            num_train_epochs=args.tinybert_stage1_epochs,
            lr_scheduler_type="constant",
            warmup_steps=0,
        )
    return dict(
        learning_rate=args.tinybert_stage2_learning_rate,
        num_train_epochs=args.tinybert_stage2_epochs,
        lr_scheduler_type="linear",
        warmup_steps=args.tinybert_stage2_warmup,
    )


def check_stage_owned_fields(args: TrainingArguments, stage: int | None = None) -> None:
    """Refuse generic schedule settings that the stages would otherwise silently replace by their own.

    A value is accepted when it is TrainingArguments' default or, for a config of one `stage`, that stage's own value.
    A config whose four schedule fields together are one stage's complete schedule is a config of that stage copied
    with `dataclasses.replace` (to the other stage, too), and is accepted whole; a mix of the two stages is not.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    values = {name: getattr(args, name) for name in _STAGE_OWNED_FIELDS}
    copied_stage = stage and any(values == stage_schedule(args, copied_from) for copied_from in (1, 2))
    own_schedule = stage_schedule(args, stage) if stage else {}
    for name, where in _STAGE_OWNED_FIELDS.items():
        value = values[name]
        if not copied_stage and value != defaults[name] and value != own_schedule.get(name, defaults[name]):
            raise ValueError(
                f"`{name}`={value!r} does not apply to `--method tinybert`, whose stages set their own "
                f"(default {defaults[name]!r}). Set {where}."
            )
    if stage == 1 and args.load_best_model_at_end:
        raise ValueError(
            "`load_best_model_at_end` is set for TinyBERT stage 1 (`tinybert_stage`=1), which trains the intermediate "
            "layers only, so no checkpoint is better at the task than another. Drop it for stage 1; stage 2 "
            "(`tinybert_stage`=2, or both stages) keeps the best checkpoint."
        )


def apply_stage_schedule(args: TrainingArguments) -> None:
    """Give a config of one TinyBERT stage (`tinybert_stage` 1 or 2) that stage's learning rate, epochs and schedule,
    in place, before `TrainingArguments.__post_init__` reads them: a `DistillationTrainer` built from it trains as
    `run_distill.py` does. A config of both stages (`tinybert_stage` unset) is only checked; `stage_arguments` makes
    each stage's config from it."""
    check_stage_owned_fields(args, args.tinybert_stage)
    if args.tinybert_stage is not None:
        for name, value in stage_schedule(args, args.tinybert_stage).items():
            setattr(args, name, value)


def stage_arguments(args: TrainingArguments, stage: int, both_stages: bool) -> TrainingArguments:
    """The config one stage trains with: its schedule (`stage_schedule`, applied by the config itself) and folder.

    When both stages run, stage 1 writes to `<output_dir>/_stage1`, which `push_to_hub` skips (Trainer ignores `_*`
    folders), and is never pushed itself: its checkpoints hold the `W_h` projections and optimizer state; it never
    reloads a best model (`load_best_model_at_end` applies to stage 2). `max_steps`, if set, applies to each stage.
    """
    if stage == 1:
        overrides = dict(
            load_best_model_at_end=False,
            output_dir=str(Path(args.output_dir) / "_stage1") if both_stages else args.output_dir,
            push_to_hub=args.push_to_hub and not both_stages,
        )
    else:
        overrides = {}
    return dataclasses.replace(args, tinybert_stage=stage, **overrides)


def stage_settings(args: TrainingArguments) -> dict[str, dict[str, Any]]:
    """The effective settings of each stage a run trains (`{"stage1": {...}, "stage2": {...}}`), for the log and
    `distillation_config.json`. Fails first on generic schedule settings the stages would replace."""
    check_stage_owned_fields(args, args.tinybert_stage)
    stages = [args.tinybert_stage] if args.tinybert_stage else [1, 2]
    settings = {}
    for stage in stages:
        stage_args = stage_arguments(args, stage, both_stages=len(stages) == 2)
        settings[f"stage{stage}"] = {
            "output_dir": stage_args.output_dir,
            "learning_rate": stage_args.learning_rate,
            "num_train_epochs": stage_args.num_train_epochs,
            "max_steps": stage_args.max_steps,
            "lr_scheduler_type": str(stage_args.lr_scheduler_type.value),
            "warmup_steps": stage_args.warmup_steps,
            "loss": "loss_emb + loss_hidden + loss_attn" if stage == 1 else _stage2_loss_text(stage_args),
        }
    return settings


def _stage2_loss_text(args: TrainingArguments) -> str:
    classification = f"{args.alpha:g} · loss_pred (t={args.temperature:g})"
    if args.alpha < 1:
        classification += f" + {1 - args.alpha:g} · loss_ce"
    return (
        f"classification: {classification}; regression: loss_ce (MSE to the gold score) + loss_mse (MSE to the "
        "teacher on rows without one)"
    )


def train_stages(
    trainer_class: type["Trainer"],
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    args: TrainingArguments,
    **trainer_kwargs,
) -> tuple["Trainer", "TrainOutput"]:
    """Train `student` with TinyBERT's stage 1 then stage 2, or only `args.tinybert_stage`.

    `trainer_kwargs` go to each stage's `trainer_class` (the `DistillationTrainer`: datasets, collator,
    processing_class, compute_metrics). Stage 2 starts from stage 1's final student, saved in `<output_dir>/_stage1`.
    A `resume_from_checkpoint` inside that folder resumes stage 1; any other resumes stage 2 (the checkpoint holds the
    student). Returns the last stage's trainer, whose `save_model()` writes the final student, and its TrainOutput.
    """
    for stage, settings in stage_settings(args).items():
        logger.info("TinyBERT %s settings: %s", stage, settings)
    stages = [args.tinybert_stage] if args.tinybert_stage else [1, 2]
    both_stages = len(stages) == 2
    resume = args.resume_from_checkpoint
    resume_stage = None
    if resume:
        stage1_dir = Path(stage_arguments(args, 1, both_stages).output_dir).resolve()
        resume_stage = 1 if stage1_dir in (Path(resume).resolve(), *Path(resume).resolve().parents) else stages[-1]
        stages = [stage for stage in stages if stage >= resume_stage]
    for stage in stages:
        stage_args = stage_arguments(args, stage, both_stages)
        trainer = trainer_class(model=student, teacher_model=teacher, args=stage_args, **trainer_kwargs)
        result = trainer.train(resume_from_checkpoint=resume if stage == resume_stage else None)
        if stage == 1 and both_stages:
            trainer.save_model()
            student = trainer.model
    return trainer, result
