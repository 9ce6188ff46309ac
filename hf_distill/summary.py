"""Size and speed of a model, and a markdown table to compare teachers and students."""

from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark
from transformers import PreTrainedTokenizerBase

from .distributed import num_parameters

WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; a parameter shared between modules (tied or SPS-shared layers) counts once, a
    ZeRO-3-partitioned one in full.

    Not `PreTrainedModel.num_parameters()`: it sums `p.numel()`, which is 0 for a ZeRO-3-partitioned parameter (whose
    full size is `ds_numel`), so a partitioned teacher would count as empty; and it exists on `PreTrainedModel`s only.
    """
    return sum(num_parameters(p) for p in model.parameters() if p.requires_grad or not trainable_only)


def directory_size_mb(path: str | Path) -> float:
    """Size in MiB (2**20 bytes) of the weight files (`*.safetensors`, `*.bin`) directly inside `path`.

    Sub-folders (such as a Trainer's `checkpoint-*`) are not counted.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"`path` must be a folder holding saved weights, got {str(path)!r}, which is not a folder.")
    files = [file for pattern in WEIGHT_FILE_PATTERNS for file in folder.glob(pattern) if file.is_file()]
    if not files:
        raise ValueError(
            f"`path` {str(path)!r} holds no weight files ({', '.join(WEIGHT_FILE_PATTERNS)}). "
            f"Pass the folder written by `save_pretrained`."
        )
    return sum(file.stat().st_size for file in files) / 2**20


def make_latency_batch(
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    seq_length: int,
    device: str | torch.device,
    pair: bool = False,
) -> dict[str, torch.Tensor]:
    """Dummy tokenizer inputs of shape (batch_size, seq_length), every position a real (unpadded) token.

    The tokenizer builds them, so special tokens match the model's; only its `model_input_names` are kept
    (`token_type_ids` or not).
    `pair=True` builds sentence pairs of about equal halves, as a pair task's model receives them.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    min_length = tokenizer.num_special_tokens_to_add(pair=pair) + (2 if pair else 1)
    if seq_length < min_length:
        raise ValueError(
            f"`seq_length` is {seq_length}, but this tokenizer adds {min_length - (2 if pair else 1)} special tokens. "
            f"Use a seq_length of at least {min_length}."
        )
    # Every word yields at least one token, so seq_length words fill the sequence before truncation.
    text = " ".join(["hello"] * seq_length)
    texts = ([text] * batch_size, [text] * batch_size) if pair else ([text] * batch_size,)
    encoded = tokenizer(
        *texts, max_length=seq_length, truncation=True, padding="max_length", return_tensors="pt"
    )
    return {name: tensor.to(device) for name, tensor in encoded.items() if name in tokenizer.model_input_names}


def measure_latency(model: nn.Module, batch: dict[str, torch.Tensor], *, warmup: int = 3, repeats: int = 10) -> float:
    """Milliseconds per forward pass on `batch` (one batch of the closing table), in eval mode under
    `torch.inference_mode()`, measured by `torch.utils.benchmark.Timer.timeit(repeats)`.

    That is the mean of `repeats` passes timed as one block, after `warmup` untimed passes (at least the two the
    Timer always runs first), with torch's current thread count; the Timer synchronises the accelerator around the
    block, so the time covers the kernels. The batch is moved to the model's device; the model's train/eval mode is
    restored afterwards.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"`warmup` must be >= 0 and `repeats` >= 1, got warmup={warmup}, repeats={repeats}.")
    device = next(model.parameters()).device
    inputs = {name: tensor.to(device) for name, tensor in batch.items()}
    timer = benchmark.Timer(
        stmt="model(**inputs)", globals={"model": model, "inputs": inputs}, num_threads=torch.get_num_threads()
    )
    timer_warmup = max(repeats // 100, 2)  # what `Timer.timeit` runs before timing
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup - timer_warmup):
                model(**inputs)
            measurement = timer.timeit(repeats)
    finally:
        model.train(was_training)
    return measurement.median * 1000


def format_cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub markdown table of `rows` restricted to `columns`, in that order.

    Floats are shown with 4 significant digits; None and missing keys as "–".
    """
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(format_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)
