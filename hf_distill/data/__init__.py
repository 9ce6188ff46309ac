from .augment_tinybert import TinyBertAugmenter, WordEmbeddings
from .augmentation import Augmenter, augment_dataset
from .conll import CONLL2003_TASK, load_conll_dir, read_conll_file
from .glue import GLUE_TASKS
from .loading import NAMED_TASKS, get_task, load_task_dataset
from .metrics import build_compute_metrics, compute_glue_metrics, load_glue_metric
from .task_spec import TASK_TYPES, TaskSpec
from .tokenization import tokenize_dataset

__all__ = [
    "Augmenter",
    "CONLL2003_TASK",
    "GLUE_TASKS",
    "NAMED_TASKS",
    "TASK_TYPES",
    "TaskSpec",
    "TinyBertAugmenter",
    "WordEmbeddings",
    "augment_dataset",
    "build_compute_metrics",
    "compute_glue_metrics",
    "get_task",
    "load_conll_dir",
    "load_glue_metric",
    "load_task_dataset",
    "read_conll_file",
    "tokenize_dataset",
]
