"""PeaKD's shuffled-parameter-sharing (SPS) student: Auto-class registration and `build_sps_student`.

Importing this package registers `SPSBertConfig` (`model_type="hf_distill_sps_bert"`) with `AutoConfig`, `AutoModel`,
`AutoModelForSequenceClassification` and `AutoModelForTokenClassification`, and marks the classes for
`register_for_auto_class`, so `save_pretrained` writes `auto_map` and copies `configuration_sps.py` / `modeling_sps.py`
next to the weights. Without hf_distill the saved student loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` (a token classifier:
`AutoModelForTokenClassification`).
"""

from collections.abc import Sequence

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertForSequenceClassification,
    BertForTokenClassification,
    PreTrainedModel,
)
from transformers.utils import logging

from ..layer_selection import copy_selected_layers, resolve_student_layer_ids
from .configuration_sps import SPSBertConfig
from .modeling_sps import (
    SPSBertClassifier,
    SPSBertForSequenceClassification,
    SPSBertForTokenClassification,
    SPSBertModel,
    SPSBertPreTrainedModel,
)

logger = logging.get_logger(__name__)

# `exist_ok` keeps a re-import (importlib.reload, notebooks) from failing on the second registration.
AutoConfig.register(SPSBertConfig.model_type, SPSBertConfig, exist_ok=True)
AutoModel.register(SPSBertConfig, SPSBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(SPSBertConfig, SPSBertForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(SPSBertConfig, SPSBertForTokenClassification, exist_ok=True)
SPSBertConfig.register_for_auto_class()
SPSBertModel.register_for_auto_class("AutoModel")
SPSBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
SPSBertForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

# Teacher config entries that describe the teacher's class, not the architecture the student inherits.
_TEACHER_ONLY_CONFIG_KEYS = ("model_type", "architectures", "transformers_version", "_name_or_path")
# The SPS head built for each BERT teacher head: same attribute names, so every student tensor has a teacher source.
_STUDENT_CLASS_BY_TEACHER_CLASS: dict[type[PreTrainedModel], type[SPSBertClassifier]] = {
    BertForSequenceClassification: SPSBertForSequenceClassification,
    BertForTokenClassification: SPSBertForTokenClassification,
}


# `--student_arch` of this student.
STUDENT_KIND = "sps"


def build_sps_student(
    teacher: PreTrainedModel,
    *,
    num_layers: int | None = None,
    layer_ids: Sequence[int] | None = None,
    shuffle_qk: bool = True,
) -> SPSBertForSequenceClassification | SPSBertForTokenClassification:
    """An SPS student initialised from a BERT classification teacher, with the teacher's kind of head.

    A `BertForSequenceClassification` teacher gives an `SPSBertForSequenceClassification`, a
    `BertForTokenClassification` teacher (NER) an `SPSBertForTokenClassification`. The student stores
    k = `num_layers` (or `len(layer_ids)`) layers copied from the teacher's first k layers or from `layer_ids`, plus
    the teacher's embeddings, classifier and (sequence classification) pooler, and executes 2k layers. Its config is
    the teacher's, labels (`id2label`/`label2id`) included. The chosen ids are recorded in
    `student.config.distillation_layer_ids` (also readable as `teacher_layer_ids`), as for plain students.

    Args:
        teacher: a `BertForSequenceClassification` or `BertForTokenClassification` (model_type "bert").
        num_layers: stored layers k (the `student_layers` option).
        layer_ids: explicit 0-based teacher layers, unique and increasing (the `student_layer_ids` option).
        shuffle_qk: swap Query and Key in the second pass (SPS); `False` gives paired parameter sharing.
    """
    student_class = next(
        (student for head, student in _STUDENT_CLASS_BY_TEACHER_CLASS.items() if isinstance(teacher, head)), None
    )
    if teacher.config.model_type != "bert" or student_class is None:
        raise ValueError(
            f"`student_arch` 'sps' needs a BERT teacher, but the teacher is {type(teacher).__name__} "
            f"(model_type {teacher.config.model_type!r}). SPS supports BERT-architecture teachers "
            f"({' or '.join(head.__name__ for head in _STUDENT_CLASS_BY_TEACHER_CLASS)}) only; use a plain truncated "
            "student for this teacher."
        )
    num_teacher_layers = teacher.config.num_hidden_layers
    layer_ids = resolve_student_layer_ids(num_teacher_layers, num_layers=num_layers, layer_ids=layer_ids)

    config_dict = {k: v for k, v in teacher.config.to_dict().items() if k not in _TEACHER_ONLY_CONFIG_KEYS}
    config = SPSBertConfig.from_dict({**config_dict, "num_hidden_layers": len(layer_ids), "shuffle_qk": shuffle_qk})
    config._attn_implementation = teacher.config._attn_implementation
    student = student_class(config)

    fresh = copy_selected_layers(student, teacher, layer_ids, layers_path="encoder.layer")
    if fresh:
        raise ValueError(
            f"The teacher {type(teacher).__name__} has no tensor for the SPS student's {', '.join(fresh)}, but an SPS "
            "student copies every tensor from its teacher. Pass a complete fine-tuned BERT classifier as `teacher`."
        )
    logger.info(
        f"SPS student: stored layer j (0-based) is executed twice, as layers j + 1 and j + 1 + {len(layer_ids)}."
    )
    return student


__all__ = [
    "SPSBertClassifier",
    "SPSBertConfig",
    "SPSBertForSequenceClassification",
    "SPSBertForTokenClassification",
    "SPSBertModel",
    "SPSBertPreTrainedModel",
    "build_sps_student",
]
