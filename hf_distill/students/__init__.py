"""Student models: stock classes built by selecting teacher layers, and custom students in sub-packages."""

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, BiLSTMForTokenClassification, build_bilstm_student
from .layer_selection import (
    ENCODER_LAYER_PATHS,
    build_student_from_teacher,
    get_encoder_layers,
    parse_layer_ids,
    register_encoder_architecture,
    resolve_student_layer_ids,
)
from .sps import (
    SPSBertConfig,
    SPSBertForSequenceClassification,
    SPSBertForTokenClassification,
    SPSBertModel,
    build_sps_student,
)

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "BiLSTMForTokenClassification",
    "SPSBertConfig",
    "SPSBertForSequenceClassification",
    "SPSBertForTokenClassification",
    "SPSBertModel",
    "build_bilstm_student",
    "build_sps_student",
    "ENCODER_LAYER_PATHS",
    "build_student_from_teacher",
    "get_encoder_layers",
    "parse_layer_ids",
    "register_encoder_architecture",
    "resolve_student_layer_ids",
]
