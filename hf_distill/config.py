"""`DistillationConfig`: `TrainingArguments` plus the distillation method and its loss settings.

Loss settings left unset take the method's preset (`METHOD_PRESETS`, from the papers' reference runs, see
`shared/docs/methods.md`); `effective_distillation_config()` reports what a run really uses.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from transformers import TrainingArguments
from transformers.utils import logging

from .guards import check_fields_apply, check_finite_settings
from .methods import DEFAULT_METHOD, METHOD_NAMES, field_readers, get_method
from .methods.pkd import PKDSettings
from .methods.tinybert import TinyBERTSettings
from .teacher_cache import TEACHER_DTYPES, check_teacher_cache_settings, dtype_name, resolve_teacher_dtype

logger = logging.get_logger(__name__)

# Settings of how the teacher runs (cached, its precision), not of what the method computes.
TEACHER_RUNTIME_FIELDS = ("teacher_cache", "overwrite_teacher_cache", "teacher_autocast_dtype", "teacher_dtype")


class _RegisteredPresets(Mapping):
    """`{method: its presets}` over the registered methods (plug-ins included), read-only."""

    def __getitem__(self, name: str) -> dict[str, float]:
        if name not in METHOD_NAMES:
            raise KeyError(name)
        return dict(get_method(name).presets)

    def __iter__(self):
        return iter(list(METHOD_NAMES))

    def __len__(self) -> int:
        return len(METHOD_NAMES)


# Presets per method (each method's `presets`: the reference settings quoted in methods.md).
METHOD_PRESETS: Mapping[str, dict[str, float]] = _RegisteredPresets()


def _preset_help(name: str) -> str:
    """`kd 0.7, pkd 0.7, …` for the `--help` of a preset setting, from `METHOD_PRESETS`."""
    return ", ".join(f"{method} {preset[name]:g}" for method, preset in METHOD_PRESETS.items() if name in preset)


@dataclass
class _LossSettings:
    """The method and the loss settings every method shares (first in `DistillationConfig`'s own fields)."""

    # -- method ---------------------------------------------------------------------------------------------------
    method: str = field(
        default=DEFAULT_METHOD,
        # The registry's own list: methods registered later (plug-ins) are valid choices too.
        metadata={"help": "Distillation method: a registered name (`hf_distill.methods`).", "choices": METHOD_NAMES},
    )
    # -- loss weights -------------------------------------------------------------------------------------------
    alpha: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the distillation term (KL for kd/pkd/peakd, logit MSE for bilstm, soft CE for "
            "tinybert stage 2); the hard-label CE, on labelled original rows only, gets 1 − alpha. Tang et al. write "
            "the BiLSTM loss as α·CE + (1−α)·MSE: their α is 1 − this alpha (their α = 0, pure MSE, is alpha 1). "
            f"Presets: {_preset_help('alpha')}."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={
            "help": f"Softmax temperature T of the KD term (> 0). Presets: {_preset_help('temperature')}.",
        },
    )
    beta: float | None = field(
        default=None,
        metadata={
            "help": f"Weight of PKD's patient loss (≥ 0). Presets: {_preset_help('beta')}.",
        },
    )
    # -- hard labels -----------------------------------------------------------------------------------------------
    train_ce_on_augmented: bool = field(
        default=False,
        metadata={
            "help": "Also train the hard-label CE on rows marked `augmented` (hf_distill.augment's output). Default: "
            "CE on original rows only, whose labels are gold; an n-gram cut or a word swap can change a sentence's "
            "label, so augmented rows feed only the distillation terms."
        },
    )


@dataclass
class DistillationConfig(TinyBERTSettings, PKDSettings, _LossSettings, TrainingArguments):
    """Training arguments for `DistillationTrainer`.

    The loss is `(1 − alpha) · CE(student, labels) + alpha · T² · KL(teacher ‖ student)` for `kd`, plus
    `beta · patient_loss` over the mapped intermediate [CLS] states for `pkd` and `peakd` (whose student and PTP
    stage are built by `run_distill.py`). `bilstm` replaces the KL term by Tang et al.'s squared error between raw
    logits. Regression tasks (one label) use squared errors instead of CE and KL. Unset (`None`) loss settings take
    the method's preset.

    Its fields beyond TrainingArguments': the method and the shared loss settings (`_LossSettings`), each method
    module's own (`methods.pkd.PKDSettings`, `methods.tinybert.TinyBERTSettings`), then how the teacher runs.
    """

    _argument_group_name = "Distillation and training (every TrainingArguments flag)"

    # -- teacher -------------------------------------------------------------------------------------------------
    intermediate_teacher: int = field(
        default=0,
        metadata={
            "help": "With several teachers (an ensemble): the teacher (0-based) whose hidden states the intermediate "
            "terms (PKD, TinyBERT) read and whose layers the student is built from."
        },
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={
            "help": "Folder of teacher outputs (logits, and the mapped layers' [CLS] states for PKD) precomputed once "
            "over the training set and read instead of running the teacher; built on first use, reused while the "
            "teacher, training set, method and layers match. Not for tinybert. Evaluation still runs the teacher."
        },
    )
    overwrite_teacher_cache: bool = field(
        default=False,
        metadata={
            "help": "Rebuild a `teacher_cache` made from another teacher, dataset or layer map instead of failing."
        },
    )
    teacher_autocast_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Run the teacher (online and while caching) under autocast in this dtype; the student keeps its "
            "own precision. Its float32 weights are cast at every op; `teacher_dtype` casts them once instead.",
            "choices": ["bfloat16", "float16"],
        },
    )
    teacher_dtype: str = field(
        default="auto",
        metadata={
            "help": "The dtype the teacher's weights are held in, cast once, for online distillation, the teacher "
            "cache and evaluating the teacher: auto = bfloat16 on GPUs with bf16 and on CPUs with AMX or AVX512-BF16, "
            "float32 elsewhere (and with `teacher_autocast_dtype`); float32 runs the teacher exactly. Resolved at "
            "startup, logged, and recorded in the settings and the teacher cache. The student keeps its own "
            "precision and every loss computes in float32. Under DeepSpeed ZeRO-3, DeepSpeed's precision settings "
            "apply instead.",
            "choices": list(TEACHER_DTYPES),
        },
    )

    def __post_init__(self):
        method = get_method(self.method)
        check_finite_settings(self.effective_distillation_config())
        self._validate_loss_settings()
        check_fields_apply(self, field_readers(), self.method, "method")
        for name, value in method.presets.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("alpha", *(f for f in method.fields if f in ("temperature", "beta"))):
            if getattr(self, name) is None:
                raise ValueError(
                    f"`{name}` is unset and method {self.method!r} has no preset for it. Pass `--{name}`, or add it "
                    "to the method's `presets`."
                )
        method.check_config(self)  # before TrainingArguments reads the schedule it may set
        super().__post_init__()
        self._validate_teacher_settings()

    def _validate_loss_settings(self) -> None:
        """Ranges of the settings given; unset ones (None) take a preset that is in range."""
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1] (the weight of the distillation term), got {self.alpha}.")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"`temperature` must be > 0, got {self.temperature}. Typical values: 1, 2, 4, 10, 20.")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"`beta` must be ≥ 0 (a loss weight), got {self.beta}.")
        # The method modules' own fields, whatever the method: a bad value is reported as such, before a field of
        # another method is refused.
        self.validate_pkd_settings()
        self.validate_tinybert_settings()

    def _validate_teacher_settings(self) -> None:
        check_teacher_cache_settings(self.method, self.teacher_cache, self.teacher_autocast_dtype)
        # What DeepSpeed cannot run: see `hf_distill.distributed` for where the teacher lives under each stage.
        zero3 = bool(self.deepspeed) and self.hf_deepspeed_config.is_zero3()
        if self.teacher_cache and zero3:
            raise ValueError(
                f"`teacher_cache` is set ({self.teacher_cache!r}), but under ZeRO-3 the teacher is partitioned across "
                "ranks, while a cache is built by one process from its full weights. Drop `teacher_cache` (the "
                "teacher then runs online), or use ZeRO stage 1 or 2, which keep a full teacher on every rank."
            )
        self.teacher_dtype = self._resolve_teacher_dtype(zero3)

    def _resolve_teacher_dtype(self, zero3: bool) -> str:
        """`teacher_dtype` with `auto` resolved, so the saved settings (and configs copied from these) say what ran."""
        name = self.teacher_dtype
        held_in_half = name in ("bfloat16", "float16")
        if held_in_half and self.teacher_autocast_dtype is not None:
            raise ValueError(
                f"`teacher_dtype`={name!r} holds the teacher's weights in that dtype, while `teacher_autocast_dtype`="
                f"{self.teacher_autocast_dtype!r} casts float32 weights at every op: pass one of them. "
                f"`--teacher_dtype {name}` alone skips the per-step casts; `teacher_autocast_dtype` runs with "
                "`teacher_dtype` auto or float32."
            )
        if held_in_half and zero3:
            raise ValueError(
                f"`teacher_dtype`={name!r}, but under DeepSpeed ZeRO-3 the teacher is partitioned and held in the "
                "precision of the DeepSpeed config (its `bf16`/`fp16` section). Drop `teacher_dtype` and set the "
                "precision there."
            )
        if name == "auto" and (self.teacher_autocast_dtype is not None or zero3):
            # Autocast computes in its dtype from float32 weights; ZeRO-3's engine holds them as DeepSpeed says.
            return "float32"
        return dtype_name(resolve_teacher_dtype(name, self.device))  # refuses a name not in TEACHER_DTYPES

    @property
    def teacher_torch_dtype(self) -> torch.dtype:
        """`teacher_dtype` as a `torch.dtype` (resolved: never `auto`)."""
        return getattr(torch, self.teacher_dtype)

    def method_settings(self) -> dict[str, Any]:
        """The settings that configure this run's method: set (not None), read by this method, and not about how the
        teacher runs (`TEACHER_RUNTIME_FIELDS`). The model card lists these."""
        readers = field_readers()
        return {
            name: value
            for name, value in self.effective_distillation_config().items()
            if value is not None and self.method in readers.get(name, (self.method,))
            and name not in TEACHER_RUNTIME_FIELDS
        }

    def effective_distillation_config(self) -> dict[str, Any]:
        """The distillation settings this run uses, after presets: the fields this class adds to TrainingArguments."""
        own = {f.name for f in fields(DistillationConfig)} - {f.name for f in fields(TrainingArguments)}
        return {name: getattr(self, name) for name in sorted(own)}
