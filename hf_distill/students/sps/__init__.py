"""PeaKD's shuffled-parameter-sharing (SPS) students: Auto-class registration and `build_sps_student`.

One student per teacher architecture, each the stock model with a shared layer list (`shared_layers.py`): BERT
(`SPSBertConfig`, model_type "hf_distill_sps_bert", `modeling_sps.py`), and RoBERTa, XLM-R, CamemBERT, ELECTRA,
DistilBERT, DeBERTa-v2/v3 and ModernBERT (`SPSRobertaConfig` … `SPSModernBertConfig`, model_type "hf_distill_sps_" +
the teacher's with "-" as "_", `modeling_sps_encoder.py`).

Importing this package registers each config with `AutoConfig`, `AutoModel`, `AutoModelForSequenceClassification`
and `AutoModelForTokenClassification`, and marks the classes for `register_for_auto_class`, so `save_pretrained`
writes `auto_map` and copies the configuration / modeling files next to the weights. Without hf_distill a saved
student loads with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` (a token
classifier: `AutoModelForTokenClassification`).
"""

from collections.abc import Sequence

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
)
from transformers.utils import logging

from ..layer_selection import copy_selected_layers, resolve_student_layer_ids, select_layers_in_config
from . import configuration_sps_encoder, modeling_sps_encoder
from .configuration_sps import SPSBertConfig
from .configuration_sps_encoder import *  # noqa: F403 (the SPS configs, each listed in its module's __all__)
from .modeling_sps import SPSBertForSequenceClassification, SPSBertForTokenClassification, SPSBertModel
from .modeling_sps_encoder import *  # noqa: F403 (the SPS model classes of the other encoders)
from .shared_layers import SharedLayerList

logger = logging.get_logger(__name__)

_AUTO_CLASS_BY_SUFFIX = {
    "Model": AutoModel,
    "ForSequenceClassification": AutoModelForSequenceClassification,
    "ForTokenClassification": AutoModelForTokenClassification,
}
# Every SPS model class: a stock class (its last base) with a shared layer list.
_SPS_MODEL_CLASSES = [SPSBertModel, SPSBertForSequenceClassification, SPSBertForTokenClassification,
                      *(getattr(modeling_sps_encoder, name) for name in modeling_sps_encoder.__all__)]
for _model_class in _SPS_MODEL_CLASSES:
    _auto_class = next(auto for end, auto in _AUTO_CLASS_BY_SUFFIX.items() if _model_class.__name__.endswith(end))
    _config_class = _model_class.config_class
    # `exist_ok` keeps a re-import (importlib.reload, notebooks) from failing on the second registration.
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    _config_class.register_for_auto_class()
    _auto_class.register(_config_class, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)

# Teacher config entries that describe the teacher's class, not the architecture the student inherits.
_TEACHER_ONLY_CONFIG_KEYS = ("model_type", "architectures", "transformers_version", "_name_or_path")
# The SPS head built for each teacher head: the stock head it derives from (its last base class), so every student
# tensor has a teacher source.
_STUDENT_CLASS_BY_TEACHER_CLASS: dict[type[PreTrainedModel], type[PreTrainedModel]] = {
    model_class.__bases__[-1]: model_class
    for model_class in _SPS_MODEL_CLASSES
    if not model_class.__name__.endswith("Model")
}


# `--student_arch` of this student.
STUDENT_KIND = "sps"


def _student_class(teacher: PreTrainedModel) -> type[PreTrainedModel]:
    """The SPS class for `teacher`'s class, or for the nearest supported class it derives from."""
    supported = _STUDENT_CLASS_BY_TEACHER_CLASS
    student_class = next((supported[cls] for cls in type(teacher).__mro__ if cls in supported), None)
    if student_class is None:
        raise ValueError(
            f"`student_arch` 'sps' has no shuffled-parameter-sharing student for a {type(teacher).__name__} teacher "
            f"(model_type {teacher.config.model_type!r}). SPS swaps each layer's Query and Key projections, which is "
            f"defined for these teacher classes: {', '.join(head.__name__ for head in supported)}. Use "
            "`--student_arch plain` (layer selection) for this teacher."
        )
    return student_class


def build_sps_student(
    teacher: PreTrainedModel,
    *,
    num_layers: int | None = None,
    layer_ids: Sequence[int] | None = None,
    shuffle_qk: bool = True,
) -> PreTrainedModel:
    """An SPS student initialised from a classification teacher, with the teacher's architecture and kind of head.

    A `BertForSequenceClassification` teacher gives an `SPSBertForSequenceClassification`, a
    `DistilBertForTokenClassification` teacher (NER) an `SPSDistilBertForTokenClassification`, and so on for
    RoBERTa, XLM-R, CamemBERT, ELECTRA, DeBERTa-v2/v3 and ModernBERT. The student stores k = `num_layers` (or
    `len(layer_ids)`) layers copied from the teacher's first k layers or from `layer_ids`, plus every other tensor
    of the teacher (embeddings, head), and executes 2k layers. Its config is the teacher's, labels
    (`id2label`/`label2id`) included, with per-layer entries (ModernBERT's `layer_types`) following the kept layers.
    The chosen ids are recorded in `student.config.distillation_layer_ids`, as for plain students.

    Args:
        teacher: a sequence- or token-classification model of BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT,
            DeBERTa-v2/v3 or ModernBERT.
        num_layers: stored layers k (the `student_layers` option).
        layer_ids: explicit 0-based teacher layers, unique and increasing (the `student_layer_ids` option).
        shuffle_qk: swap Query and Key in the second pass (SPS); `False` gives paired parameter sharing.
    """
    student_class = _student_class(teacher)
    num_teacher_layers = teacher.config.num_hidden_layers
    layer_ids = resolve_student_layer_ids(num_teacher_layers, num_layers=num_layers, layer_ids=layer_ids)

    config_dict = {k: v for k, v in teacher.config.to_dict().items() if k not in _TEACHER_ONLY_CONFIG_KEYS}
    config = student_class.config_class.from_dict({**config_dict, "shuffle_qk": shuffle_qk})
    select_layers_in_config(config, layer_ids)
    config._attn_implementation = teacher.config._attn_implementation
    student = student_class(config)

    fresh = copy_selected_layers(student, teacher, layer_ids, layers_path=student_class.stored_layers_path)
    if fresh:
        raise ValueError(
            f"The teacher {type(teacher).__name__} has no tensor for the SPS student's {', '.join(fresh)}, but an SPS "
            "student copies every tensor from its teacher. Pass a complete fine-tuned classifier as `teacher`."
        )
    logger.info(
        f"SPS student: stored layer j (0-based) is executed twice, as layers j + 1 and j + 1 + {len(layer_ids)}."
    )
    return student


__all__ = [
    "SPSBertConfig",
    "SPSBertForSequenceClassification",
    "SPSBertForTokenClassification",
    "SPSBertModel",
    "SharedLayerList",
    "build_sps_student",
    *modeling_sps_encoder.__all__,
    *[name for name in configuration_sps_encoder.__all__ if name != "SharedLayersConfigFields"],
]
