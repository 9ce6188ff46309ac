from .augment_tinybert import TinyBertAugmenter, WordEmbeddings
from .augmentation import Augmenter, augment_dataset
from .glue import GLUE_TASKS, TaskSpec, get_task, load_task_dataset, tokenize_dataset
from .metrics import build_compute_metrics, compute_glue_metrics, load_glue_metric

__all__ = [
    "Augmenter",
    "TinyBertAugmenter",
    "WordEmbeddings",
    "augment_dataset",
    "GLUE_TASKS",
    "TaskSpec",
    "build_compute_metrics",
    "compute_glue_metrics",
    "get_task",
    "load_glue_metric",
    "load_task_dataset",
    "tokenize_dataset",
]
