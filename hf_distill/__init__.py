"""hf_distill: knowledge distillation for BERT-family models as a Hugging Face `Trainer` extension."""

from . import losses
from .config import METHOD_PRESETS, DistillationConfig
from .data import (
    CONLL2003_TASK,
    GLUE_TASKS,
    NAMED_TASKS,
    TaskSpec,
    build_compute_metrics,
    get_task,
    load_task_dataset,
    tokenize_dataset,
)
from .data.collation import TwoTokenizerCollator
from .data.tokenization import tokenize_for_student
from .data.transfer import add_transfer_rows, load_transfer_dataset
from .ensemble import TeacherEnsemble
from .methods import DistillationMethod, LossInputs, get_method, register_method
from .students import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    BiLSTMForTokenClassification,
    SPSBertConfig,
    SPSBertForSequenceClassification,
    SPSBertForTokenClassification,
    build_bilstm_student,
    build_sps_student,
    build_student_from_teacher,
)
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "CONLL2003_TASK",
    "GLUE_TASKS",
    "NAMED_TASKS",
    "METHOD_PRESETS",
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "BiLSTMForTokenClassification",
    "DistillationConfig",
    "DistillationMethod",
    "DistillationTrainer",
    "LossInputs",
    "SPSBertConfig",
    "SPSBertForSequenceClassification",
    "SPSBertForTokenClassification",
    "TaskSpec",
    "TeacherEnsemble",
    "TwoTokenizerCollator",
    "add_transfer_rows",
    "build_bilstm_student",
    "build_compute_metrics",
    "build_sps_student",
    "build_student_from_teacher",
    "get_method",
    "get_task",
    "load_task_dataset",
    "load_transfer_dataset",
    "losses",
    "register_method",
    "tokenize_dataset",
    "tokenize_for_student",
    "__version__",
]
