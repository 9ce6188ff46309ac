"""LoRA (PEFT) teachers and students: the command-line arguments both scripts share, adapter folders as teachers,
LoRA-wrapped students and merging back into plain models.

An adapter folder written by `run_glue_teacher.py --use_peft` holds `adapter_config.json`, the adapter weights (the
LoRA matrices plus the full classifier, which task type SEQ_CLS trains and saves), the tokenizer and `config.json`
with the task's labels, so the base model is rebuilt with the right head before the adapter is applied.
"""

import os
from dataclasses import dataclass, field

from peft import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging
from transformers.utils.peft_utils import find_adapter_config_file

from .guards import _LOAD_ERRORS, check_loaded_weights, check_tokenizer_vocabulary, looks_like_a_local_path

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
        """A SEQ_CLS (TOKEN_CLS for a token classifier) `LoraConfig` for `model`: its classifier is trained in full
        and saved with the adapter."""
        return LoraConfig(
            task_type=TaskType.TOKEN_CLS if is_token_classifier(model) else TaskType.SEQ_CLS,
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


def _adapter_base(name_or_path: str, argument: str) -> str:
    """The `base_model_name_or_path` of the adapter at `name_or_path`, refused when it names a missing folder."""
    base = PeftConfig.from_pretrained(name_or_path).base_model_name_or_path
    if not base or (looks_like_a_local_path(base) and not os.path.isdir(os.path.expanduser(base))):
        raise ValueError(
            f"`{argument}` is {name_or_path!r}, a LoRA adapter whose base model {base!r} (`base_model_name_or_path` "
            "in its adapter_config.json) is not an existing folder. Put the base model back at that path, or set "
            "`base_model_name_or_path` in adapter_config.json to its Hub id or current folder."
        )
    return base


def _load_adapter_base(loader, base: str, name_or_path: str, argument: str, **kwargs):
    """`loader(base, **kwargs)`, a failure re-raised as the adapter's broken base."""
    try:
        return loader(base, **kwargs)
    except _LOAD_ERRORS as error:
        raise ValueError(
            f"`{argument}` is {name_or_path!r}, a LoRA adapter whose base model {base!r} (`base_model_name_or_path` "
            f"in its adapter_config.json) could not be loaded: {type(error).__name__}: {error} Make the base model "
            "available (download it, or save it again), or point `base_model_name_or_path` at it."
        ) from error


def is_token_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForTokenClassification")


def classifier_auto_class(model: nn.Module) -> type:
    """The `AutoModelFor…` class a teacher of `model` (a student) loads with."""
    return AutoModelForTokenClassification if is_token_classifier(model) else AutoModelForSequenceClassification


def load_teacher(
    name_or_path: str, argument: str = "teacher_model_name_or_path", auto_class: type | None = None
) -> PreTrainedModel:
    """A fine-tuned classifier from a full checkpoint, or from a SEQ_CLS/TOKEN_CLS LoRA adapter applied to its base
    and merged: a token classifier when the checkpoint is one (its `architectures`, the adapter's task type), else a
    sequence classifier; `auto_class` (an `AutoModelFor…` class) asks for one and refuses a checkpoint of the other.

    For an adapter, the labels come from the adapter folder's `config.json` when present (as `run_glue_teacher.py
    --use_peft` writes it), else from the base model's config. A checkpoint missing weights (a bare `BertModel`, with
    no trained classifier, or weights of another architecture) is refused: `from_pretrained` would fill them randomly.
    `argument` names the teacher in error messages.
    """
    adapter_config_file = find_adapter_config_file(name_or_path)
    if adapter_config_file is None:
        config = AutoConfig.from_pretrained(name_or_path)
        is_token = any(name.endswith("ForTokenClassification") for name in config.architectures or ())
        auto_class = _check_head_class(auto_class, is_token, name_or_path, argument)
        model, loading_info = auto_class.from_pretrained(name_or_path, output_loading_info=True)
        check_loaded_weights(model, loading_info, name_or_path, argument, new_head_ok=False)
        return model
    peft_config = PeftConfig.from_pretrained(name_or_path)
    if peft_config.task_type not in (TaskType.SEQ_CLS, TaskType.TOKEN_CLS):
        raise ValueError(
            f"`{argument}` {name_or_path!r} is a PEFT adapter with task_type "
            f"{peft_config.task_type!r}, but a teacher needs task_type 'SEQ_CLS' or 'TOKEN_CLS' so that its trained "
            "classifier is saved with it. Fine-tune it with `run_glue_teacher.py --use_peft`."
        )
    auto_class = _check_head_class(auto_class, peft_config.task_type == TaskType.TOKEN_CLS, name_or_path, argument)
    base = _adapter_base(name_or_path, argument)
    adapter_dir = os.path.dirname(adapter_config_file)
    has_labels = os.path.isfile(os.path.join(adapter_dir, "config.json"))
    config = (
        AutoConfig.from_pretrained(adapter_dir)
        if has_labels
        else _load_adapter_base(AutoConfig.from_pretrained, base, name_or_path, argument)
    )
    logger.info(f"Teacher {name_or_path!r} is a LoRA adapter on {base!r}: loading the base and merging the adapter")
    # The base checkpoint may have another head (or none); the adapter carries the trained classifier (SEQ_CLS and
    # TOKEN_CLS save it as a module to save), which replaces whatever the base had.
    model, loading_info = _load_adapter_base(
        auto_class.from_pretrained,
        base,
        name_or_path,
        argument,
        config=config,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
    )
    check_loaded_weights(model, loading_info, base, argument, new_head_ok=True)
    return PeftModel.from_pretrained(model, name_or_path).merge_and_unload()


def _check_head_class(auto_class: type | None, is_token: bool, name_or_path: str, argument: str) -> type:
    """The checkpoint's own head class, refused when `auto_class` asks for the other one (a sequence classifier's
    head has the shape of a token classifier's and would load silently)."""
    own = AutoModelForTokenClassification if is_token else AutoModelForSequenceClassification
    if auto_class is not None and auto_class is not own:
        have, need = ("token", "sequence") if is_token else ("sequence", "token")
        raise ValueError(
            f"`{argument}` {name_or_path!r} is a {have} classifier, but a {need} classifier is needed here. Use a "
            f"teacher fine-tuned for {need} classification (`run_glue_teacher.py` with the task's data arguments)."
        )
    return own


def load_teacher_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer: from the given folder or repo, or, for a local adapter folder saved without one, from
    the adapter's base model. A folder without tokenizer files is refused (transformers would build an empty
    tokenizer that reads every word as the unknown token)."""
    argument = "teacher_model_name_or_path"
    adapter_config_file = find_adapter_config_file(name_or_path)
    if (
        adapter_config_file is not None
        and os.path.isdir(name_or_path)
        and not os.path.isfile(os.path.join(name_or_path, "tokenizer_config.json"))
    ):
        base = _adapter_base(name_or_path, argument)
        tokenizer = _load_adapter_base(AutoTokenizer.from_pretrained, base, name_or_path, argument)
        check_tokenizer_vocabulary(tokenizer, base, argument)
        return tokenizer
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    check_tokenizer_vocabulary(tokenizer, name_or_path, argument)
    return tokenizer
