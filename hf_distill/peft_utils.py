"""LoRA (PEFT) teachers and students: the command-line arguments both scripts share, adapter folders as teachers,
LoRA-wrapped students and merging back into plain models.

An adapter folder written by `run_glue_teacher.py --use_peft` holds `adapter_config.json`, the adapter weights (the
LoRA matrices plus the full classifier, which task type SEQ_CLS trains and saves), the tokenizer and `config.json`
with the task's labels, so the base model is rebuilt with the right head before the adapter is applied.
"""

import json
import os
from dataclasses import dataclass, field

from peft import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging
from transformers.utils.peft_utils import find_adapter_config_file

logger = logging.get_logger(__name__)


@dataclass
class LoraArguments:
    """LoRA settings shared by `run_glue_teacher.py --use_peft` and `run_distill.py --student_peft`."""

    _argument_group_name = "LoRA (PEFT)"

    lora_r: int = field(default=8, metadata={"help": "LoRA rank r of the update matrices."})
    lora_alpha: int = field(
        default=16, metadata={"help": "LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."}
    )
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated names of the modules to adapt, e.g. 'query,value' or 'all-linear'. Default: "
            "PEFT's choice for the architecture ('query,value' for BERT)."
        },
    )

    def __post_init__(self):
        if self.lora_r < 1:
            raise ValueError(f"`lora_r` must be a positive rank, got {self.lora_r}. Typical values: 4, 8, 16.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout}.")

    def lora_config(self, model: PreTrainedModel) -> LoraConfig:
        """A SEQ_CLS `LoraConfig` for `model`: its classifier is trained in full and saved with the adapter."""
        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self._target_modules(model),
        )

    def _target_modules(self, model: PreTrainedModel) -> list[str] | str:
        if self.lora_target_modules:
            names = [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]
            return names[0] if names == ["all-linear"] else names
        model_type = model.config.model_type
        if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
            raise ValueError(
                f"`lora_target_modules` is unset and PEFT has no default for model_type {model_type!r}. Name the "
                "modules to adapt, e.g. `--lora_target_modules query,value` or `--lora_target_modules all-linear`."
            )
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])


@dataclass
class TeacherPeftArguments(LoraArguments):
    """`run_glue_teacher.py`: fine-tune the teacher as a LoRA adapter."""

    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune the teacher as a LoRA adapter (the classifier is trained in full). The output folder "
            "holds the adapter, the tokenizer and config.json; run_distill.py takes it as "
            "`--teacher_model_name_or_path`."
        },
    )


@dataclass
class StudentPeftArguments(LoraArguments):
    """`run_distill.py`: train the student as a LoRA adapter."""

    student_peft: bool = field(
        default=False,
        metadata={"help": "Train the student with LoRA (the lora_* settings) instead of updating all its weights."},
    )
    merge_student_peft: bool = field(
        default=True,
        metadata={
            "help": "With --student_peft, merge the adapter into the student before saving, so the output is a plain "
            "model. --no_merge_student_peft saves the adapter only (needs --student_model_name_or_path as its base)."
        },
    )


def add_lora(model: PreTrainedModel, args: LoraArguments) -> PeftModel:
    """Wrap `model` for LoRA training: only the adapters and the classifier stay trainable."""
    peft_model = get_peft_model(model, args.lora_config(model))
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(f"LoRA: {trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)")
    return peft_model


def add_student_lora(student: PreTrainedModel, args: StudentPeftArguments) -> PreTrainedModel | PeftModel:
    """The student as `run_distill.py` trains it: LoRA-wrapped with `--student_peft`, else unchanged.

    An unmerged adapter is useless without its base on disk, so `--no_merge_student_peft` needs a student loaded from
    a folder or the Hub (`student.name_or_path`); one built from teacher layers exists only in memory.
    """
    if not args.student_peft:
        return student
    if not args.merge_student_peft and not student.name_or_path:
        raise ValueError(
            "`merge_student_peft` is False, so only the LoRA adapter is saved, but the student was built from teacher "
            "layers in memory and its base weights exist nowhere to apply the adapter to. Pass "
            "`--student_model_name_or_path` (a saved student), or drop `--no_merge_student_peft`."
        )
    return add_lora(student, args)


def merge_peft_model(model: nn.Module) -> nn.Module:
    """A `PeftModel` with its adapters merged into the base weights (a plain model, faster at inference); any other
    model unchanged. The merge happens in place: the `PeftModel` is consumed."""
    if isinstance(model, PeftModel):
        logger.info("Merging the LoRA adapter into its base model")
        return model.merge_and_unload()
    return model


def is_peft_adapter(name_or_path: str) -> bool:
    """Whether a local folder or Hub repo holds a PEFT adapter (`adapter_config.json`) rather than a full model."""
    return find_adapter_config_file(name_or_path) is not None


def load_teacher(name_or_path: str) -> PreTrainedModel:
    """A sequence classifier from a full checkpoint, or from a SEQ_CLS LoRA adapter applied to its base and merged.

    For an adapter, the labels come from the adapter folder's `config.json` when present (as `run_glue_teacher.py
    --use_peft` writes it), else from the base model's config.
    """
    adapter_config_file = find_adapter_config_file(name_or_path)
    if adapter_config_file is None:
        return AutoModelForSequenceClassification.from_pretrained(name_or_path)
    peft_config = PeftConfig.from_pretrained(name_or_path)
    if peft_config.task_type != TaskType.SEQ_CLS:
        raise ValueError(
            f"`teacher_model_name_or_path` {name_or_path!r} is a PEFT adapter with task_type "
            f"{peft_config.task_type!r}, but a teacher needs task_type 'SEQ_CLS' so that its trained classifier is "
            "saved with it. Fine-tune it with `run_glue_teacher.py --use_peft`."
        )
    base = peft_config.base_model_name_or_path
    adapter_dir = os.path.dirname(adapter_config_file)
    has_labels = os.path.isfile(os.path.join(adapter_dir, "config.json"))
    config = AutoConfig.from_pretrained(adapter_dir if has_labels else base)
    logger.info(f"Teacher {name_or_path!r} is a LoRA adapter on {base!r}: loading the base and merging the adapter")
    # The base checkpoint may have another head (or none); the adapter carries the trained classifier (SEQ_CLS saves
    # it as a module to save), which replaces whatever the base had.
    model = AutoModelForSequenceClassification.from_pretrained(base, config=config, ignore_mismatched_sizes=True)
    return PeftModel.from_pretrained(model, name_or_path).merge_and_unload()


def load_teacher_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer: from the given folder or repo, or, for a local adapter folder saved without one, from
    the adapter's base model."""
    source = name_or_path
    adapter_config_file = find_adapter_config_file(name_or_path)
    if (
        adapter_config_file is not None
        and os.path.isdir(name_or_path)
        and not os.path.isfile(os.path.join(name_or_path, "tokenizer_config.json"))
    ):
        with open(adapter_config_file, encoding="utf-8") as handle:
            source = json.load(handle)["base_model_name_or_path"]
    return AutoTokenizer.from_pretrained(source)
