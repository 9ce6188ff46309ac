"""hf_distill: knowledge distillation for BERT-family models as a Hugging Face `Trainer` extension."""

from .config import METHOD_PRESETS, DistillationConfig
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = ["DistillationConfig", "DistillationTrainer", "METHOD_PRESETS", "__version__"]
