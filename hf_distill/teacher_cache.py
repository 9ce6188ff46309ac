"""Teacher-output cache: the teacher's logits, and the [CLS] states of the teacher layers PKD maps, computed once over
the tokenized training set and read by `DistillationTrainer` instead of running the teacher at every step.

A cache is a folder:

    teacher_outputs.arrow   one row per training row, in row order: `row` (the key: the row's position in the
                            tokenized training set), `logits` (C floats; token classification: P × C floats, the
                            logits of the row's P labelled tokens in position order) and, for PKD, `cls` (K × d
                            floats, the [CLS] vector of each mapped teacher layer); `datasets.Dataset.from_file`
                            opens it
    teacher_cache.json      what it was built from (`TeacherCacheKey`)
    COMPLETE                written last: a folder without it is not a cache

It is built in a temporary sibling folder and renamed into place, so an interrupted build leaves nothing that looks
complete. Rows are keyed by position, not by `idx`: augmented rows share their original's `idx` but not its outputs.
`TeacherCache.attach` adds the position as the `teacher_cache_row` column, which the trainer keeps in its batches,
so shuffling, several epochs and data-parallel sharding all read the right rows.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, Features, List, Value
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.utils import logging

from .ensemble import TeacherEnsemble
from .io import atomic_directory
from .methods import get_method

logger = logging.get_logger(__name__)

CACHE_ROW_COLUMN = "teacher_cache_row"
TEACHER_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
AUTOCAST_DTYPES = ("bfloat16", "float16")
TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
# CPU features that run bf16 matmuls natively (AMX, AVX512-BF16); without them oneDNN emulates bf16, slower than fp32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

OUTPUTS_FILE = "teacher_outputs.arrow"
KEY_FILE = "teacher_cache.json"
COMPLETE_MARKER = "COMPLETE"
FORMAT_VERSION = 1
# Rows are sorted by length inside windows of this many batches, so batches carry little padding while the outputs
# are still written in row order with bounded memory.
_WINDOW_BATCHES = 32
_HASH_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class TeacherCacheKey:
    """What a cache was built from. A cache serves a run only if the run's key is equal."""

    teacher_hash: str
    dataset_fingerprint: str
    num_rows: int
    max_length: int
    method: str
    teacher_layers: tuple[int, ...]
    teacher_autocast_dtype: str | None
    # Caches written before the field existed were built by a float32 teacher.
    teacher_dtype: str = "float32"
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, payload: dict) -> "TeacherCacheKey":
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in payload.items() if name in known}
        values["teacher_layers"] = tuple(values.get("teacher_layers", ()))
        return cls(**values)

    def differences(self, expected: "TeacherCacheKey") -> list[str]:
        """Human-readable `cache has X, this run needs Y` lines, empty when the keys are equal."""
        labels = {
            "teacher_hash": "teacher weights (sha256)",
            "dataset_fingerprint": "tokenized training set (content sha256)",
            "num_rows": "training rows",
            "max_length": "longest tokenized row",
            "method": "method",
            "teacher_layers": "teacher layers whose [CLS] is stored",
            "teacher_autocast_dtype": "teacher_autocast_dtype",
            "teacher_dtype": "teacher_dtype (the teacher weights' dtype, which their sha256 covers too)",
            "format_version": "cache format version",
        }
        return [
            f"{labels[f.name]}: cache has {getattr(self, f.name)!r}, this run needs {getattr(expected, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(expected, f.name)
        ]


@dataclass
class TeacherOutputs:
    """The teacher outputs a distillation loss reads.

    `logits`: `(B, C)` float32. `hidden_states`: `{layer: (B, 1, d)}` for the stored layers (1-based, 0 = embedding
    output), the [CLS] position only, so `hidden_states[t][:, 0]` reads like a model's `hidden_states[t][:, 0]`.
    """

    logits: torch.Tensor
    hidden_states: dict[int, torch.Tensor]


def check_teacher_cache_settings(method: str, teacher_cache: str | None, teacher_autocast_dtype: str | None) -> None:
    """Validate the cache-related `DistillationConfig` fields: a method whose losses read full hidden-state or
    attention tensors (not `cacheable`), too large to store per example, runs its teacher online."""
    if teacher_cache and not get_method(method).cacheable:
        raise ValueError(
            f"`teacher_cache` is set ({teacher_cache!r}) but `method`={method!r} reads the teacher's full hidden "
            "states and attention scores, which are not cached. Drop `teacher_cache` to run the teacher online."
        )
    if teacher_autocast_dtype is not None and teacher_autocast_dtype not in AUTOCAST_DTYPES:
        raise ValueError(
            f"`teacher_autocast_dtype` must be one of {list(AUTOCAST_DTYPES)} or unset, got "
            f"{teacher_autocast_dtype!r}."
        )


def teacher_autocast(dtype: str | None, device: torch.device | str):
    """Autocast context for the teacher's forward pass; a no-op when `dtype` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, dtype))


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively: AMX or AVX512-BF16."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return any(capabilities.get(flag, False) for flag in _BF16_CPU_FLAGS)
    try:  # a torch without `torch.cpu.get_capabilities`: the kernel's list (Linux)
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def has_native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes in bf16 natively: a CUDA GPU with bf16, a CPU with AMX or AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_teacher_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The dtype `teacher_dtype` `name` holds the teacher in on `device`. `auto`: bfloat16 where the device computes
    in bf16 natively (`has_native_bf16`), float32 elsewhere; the choice is logged."""
    if name not in TEACHER_DTYPES:
        raise ValueError(f"`teacher_dtype` must be one of {list(TEACHER_DTYPES)}, got {name!r}.")
    if name != "auto":
        return getattr(torch, name)
    native = has_native_bf16(device)
    dtype = torch.bfloat16 if native else torch.float32
    logger.info(
        "teacher_dtype auto: the teacher runs in %s: this %s %s bf16 natively (detected: CUDA GPUs with bf16, CPUs "
        "with AMX or AVX512-BF16; emulated bf16 is slower than float32).",
        dtype_name(dtype), torch.device(device).type, "computes in" if native else "does not compute in",
    )
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> "bfloat16", the spelling of `teacher_dtype`."""
    return str(dtype).removeprefix("torch.")


def cast_teacher(teacher: torch.nn.Module, dtype: torch.dtype) -> None:
    """Hold the teacher's floating-point weights in `dtype` (in place). A `TeacherEnsemble` casts its teachers only:
    its temperature buffer stays exact."""
    for model in teacher.teachers if isinstance(teacher, TeacherEnsemble) else [teacher]:
        model.to(dtype)


def teacher_weights_hash(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the model's state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _input_columns(dataset: Dataset) -> list[str]:
    if "input_ids" not in dataset.column_names:
        raise ValueError(
            f"`teacher_cache` needs a tokenized training set with an `input_ids` column, got columns "
            f"{dataset.column_names}. Tokenize it first (`hf_distill.tokenize_dataset`)."
        )
    return [name for name in TEACHER_INPUT_COLUMNS if name in dataset.column_names]


def has_token_labels(dataset: Dataset) -> bool:
    """Whether `labels` holds one integer per token (token classification): the labelled positions, whose logits the
    cache stores, are then part of what it was built from."""
    feature = dataset.features.get("labels")
    return isinstance(feature, List) and isinstance(feature.feature, Value) and feature.feature.dtype.startswith("int")


def dataset_fingerprint(dataset: Dataset) -> tuple[str, int]:
    """`(sha256, longest row)` of the teacher's input columns (and of per-token `labels`), row by row in order.

    The content, not `datasets`' own fingerprint, so the same data tokenized in another process matches; any change
    of text, order, tokenizer, `max_seq_length` (or of the labelled tokens, `label_all_tokens`) changes it.
    """
    columns = _input_columns(dataset) + (["labels"] if has_token_labels(dataset) else [])
    digest = hashlib.sha256(",".join(columns).encode())
    longest = 0
    arrow = dataset.with_format("arrow")
    for start in range(0, len(dataset), _HASH_CHUNK_ROWS):
        table = arrow[start : start + _HASH_CHUNK_ROWS]
        for name in columns:
            column = table.column(name)
            lengths = pc.list_value_length(column).to_numpy().astype(np.int64)
            values = pc.list_flatten(column).to_numpy().astype(np.int64)
            digest.update(lengths.tobytes())
            digest.update(values.tobytes())
            longest = max(longest, int(lengths.max(initial=0)))
    return digest.hexdigest(), longest


def expected_key(
    teacher: PreTrainedModel,
    dataset: Dataset,
    method: str,
    teacher_layers: Sequence[int],
    teacher_autocast_dtype: str | None = None,
) -> TeacherCacheKey:
    """The key of a cache of `teacher`'s outputs over `dataset` for `method` and these [CLS] layers, run in the
    dtype the teacher's weights are held in."""
    fingerprint, longest = dataset_fingerprint(dataset)
    return TeacherCacheKey(
        teacher_hash=teacher_weights_hash(teacher),
        dataset_fingerprint=fingerprint,
        num_rows=len(dataset),
        max_length=longest,
        method=method,
        teacher_layers=tuple(int(layer) for layer in teacher_layers),
        teacher_autocast_dtype=teacher_autocast_dtype,
        teacher_dtype=dtype_name(next(teacher.parameters()).dtype),
    )


def teacher_forward(
    teacher: PreTrainedModel,
    inputs: dict[str, torch.Tensor],
    teacher_layers: Sequence[int],
    autocast_dtype: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One no-grad teacher pass on a padded batch: `(logits (B, C), cls (B, K, d) or None)`, float32.

    Hidden states are requested only when `teacher_layers` (1-based, 0 = embeddings) is not empty.
    """
    with torch.no_grad(), teacher_autocast(autocast_dtype, teacher.device):
        outputs = teacher(**inputs, output_hidden_states=bool(teacher_layers))
    cls = None
    if teacher_layers:
        cls = torch.stack([outputs.hidden_states[layer][:, 0] for layer in teacher_layers], dim=1).float()
    return outputs.logits.float(), cls


def _pad(rows: list[dict[str, list[int]]], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad `input_ids` with `pad_token_id` and the other columns with 0; mask from the lengths if absent."""
    length = max(len(row["input_ids"]) for row in rows)
    batch = {}
    for name in rows[0]:
        pad_value = pad_token_id if name == "input_ids" else 0
        batch[name] = torch.tensor([row[name] + [pad_value] * (length - len(row[name])) for row in rows])
    if "attention_mask" not in batch:
        batch["attention_mask"] = torch.tensor([[1] * len(row["input_ids"]) + [0] * (length - len(row["input_ids"]))
                                                for row in rows])
    return {name: tensor.to(device) for name, tensor in batch.items()}


def _output_features(num_labels: int, num_layers: int, hidden_size: int, per_token: bool) -> Features:
    logits = List(Value("float32"), length=num_labels)
    features = {"row": Value("int64"), "logits": List(logits) if per_token else logits}
    if num_layers:
        features["cls"] = List(List(Value("float32"), length=hidden_size), length=num_layers)
    return Features(features)


def _fixed_size(values: np.ndarray, *sizes: int) -> pa.Array:
    """A (nested) fixed-size-list Arrow array over a C-contiguous float32 array of shape `(n, *sizes)`."""
    array = pa.array(values.reshape(-1))
    for size in reversed(sizes):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def _compute_windows(
    teacher: PreTrainedModel,
    dataset: Dataset,
    teacher_layers: Sequence[int],
    batch_size: int,
    autocast_dtype: str | None,
    progress: tqdm,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield `(first row, logits (W, C), cls (W, K, d) or None)` for consecutive windows of rows, in row order;
    token classification: logits a list of W arrays `(P_i, C)`, the logits of each row's labelled tokens."""
    columns = _input_columns(dataset)
    token_labels = has_token_labels(dataset)
    inputs = dataset.select_columns(columns + (["labels"] if token_labels else [])).with_format(None)
    pad_token_id = teacher.config.pad_token_id or 0
    window = batch_size * _WINDOW_BATCHES
    for start in range(0, len(dataset), window):
        table = inputs[start : start + window]
        rows = [{name: table[name][i] for name in columns} for i in range(len(table["input_ids"]))]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        logits, cls = ([None] * len(rows) if token_labels else None), None
        for offset in range(0, len(order), batch_size):
            positions = order[offset : offset + batch_size]
            batch_logits, batch_cls = teacher_forward(
                teacher, _pad([rows[i] for i in positions], pad_token_id, teacher.device), teacher_layers,
                autocast_dtype,
            )
            if token_labels:
                for k, position in enumerate(positions):
                    labelled = np.asarray(table["labels"][position]) != -100
                    logits[position] = batch_logits[k, : len(labelled)].cpu().numpy()[labelled]
            else:
                if logits is None:
                    logits = np.empty((len(rows), batch_logits.size(1)), dtype=np.float32)
                logits[positions] = batch_logits.cpu().numpy()
            if batch_cls is not None and cls is None:
                cls = np.empty((len(rows), *batch_cls.shape[1:]), dtype=np.float32)
            if cls is not None:
                cls[positions] = batch_cls.cpu().numpy()
            progress.update(len(positions))
        yield start, logits, cls


def _write_outputs(path: Path, teacher, dataset, teacher_layers, batch_size, autocast_dtype, show_progress) -> None:
    hidden_size = teacher.config.hidden_size
    per_token = has_token_labels(dataset)
    num_labels = teacher.config.num_labels
    features = _output_features(num_labels, len(teacher_layers), hidden_size, per_token)
    was_training = teacher.training
    teacher.eval()
    progress = tqdm(total=len(dataset), desc="Caching teacher outputs", unit="row", disable=not show_progress)
    try:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, features.arrow_schema) as writer:
            for start, logits, cls in _compute_windows(
                teacher, dataset, teacher_layers, batch_size, autocast_dtype, progress
            ):
                if per_token:
                    offsets = np.concatenate([[0], np.cumsum([len(row) for row in logits])]).astype(np.int32)
                    flat = np.concatenate(logits).astype(np.float32) if logits else np.empty((0, num_labels))
                    logits_array = pa.ListArray.from_arrays(pa.array(offsets), _fixed_size(flat, num_labels))
                else:
                    logits_array = _fixed_size(logits, logits.shape[1])
                columns = [pa.array(np.arange(start, start + len(logits))), logits_array]
                if cls is not None:
                    columns.append(_fixed_size(cls, *cls.shape[1:]))
                writer.write_batch(pa.record_batch(columns, schema=features.arrow_schema))
    finally:
        progress.close()
        teacher.train(was_training)


class TeacherCache:
    """A complete cache folder, opened memory-mapped. Build or open one with `load_or_build_teacher_cache`."""

    def __init__(self, path: str | Path, key: TeacherCacheKey, outputs: Dataset):
        self.path = Path(path)
        self.key = key
        self._outputs = outputs.with_format("numpy")

    @classmethod
    def load(cls, path: str | Path) -> "TeacherCache":
        path = Path(path)
        if not (path / COMPLETE_MARKER).is_file():
            raise _incomplete_cache_error(path)
        key = TeacherCacheKey.from_json(json.loads((path / KEY_FILE).read_text()))
        outputs = Dataset.from_file(str(path / OUTPUTS_FILE))
        assert len(outputs) == key.num_rows, f"{path}: {len(outputs)} cached rows, key says {key.num_rows}"
        return cls(path, key, outputs)

    def __len__(self) -> int:
        return self.key.num_rows

    def attach(self, dataset: Dataset) -> Dataset:
        """`dataset` (the training set the cache was built on) with its row positions as `teacher_cache_row`."""
        if len(dataset) != len(self):
            raise ValueError(
                f"`teacher_cache` {str(self.path)!r} holds {len(self)} rows but the training set has {len(dataset)}. "
                "Attach the cache to the training set it was built on."
            )
        if CACHE_ROW_COLUMN in dataset.column_names:
            dataset = dataset.remove_columns(CACHE_ROW_COLUMN)
        return dataset.add_column(CACHE_ROW_COLUMN, np.arange(len(dataset), dtype=np.int64))

    def lookup(self, rows: torch.Tensor) -> TeacherOutputs:
        """The cached outputs of training rows `rows` (B,), on `rows.device`: logits `(B, C)`, or for token
        classification `(N, C)`, the labelled tokens of the rows one after the other (the trainer's order)."""
        positions = rows.tolist()
        batch = self._outputs[positions]
        assert batch["row"].tolist() == positions, "teacher cache rows are out of order"
        logits = batch["logits"]
        per_token = self._outputs.features["logits"].length == -1  # a row holds one logit vector per labelled token
        if per_token:
            num_labels = self._outputs.features["logits"].feature.length
            logits = np.concatenate([np.asarray(row, dtype=np.float32).reshape(-1, num_labels) for row in logits])
        logits = torch.from_numpy(np.ascontiguousarray(logits)).to(rows.device, non_blocking=True)
        hidden_states = {}
        if self.key.teacher_layers:
            cls = torch.from_numpy(batch["cls"]).to(rows.device, non_blocking=True)
            hidden_states = {layer: cls[:, k : k + 1] for k, layer in enumerate(self.key.teacher_layers)}
        return TeacherOutputs(logits=logits, hidden_states=hidden_states)


def build_teacher_cache(
    path: str | Path,
    teacher: PreTrainedModel,
    dataset: Dataset,
    key: TeacherCacheKey,
    batch_size: int = 64,
    show_progress: bool = True,
) -> TeacherCache:
    """Compute the outputs `key` describes into a temporary sibling folder, then rename it to `path` (replacing
    what is there), through `hf_distill.io.atomic_directory`. Nothing is left at `path` if the build fails."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        logger.info("Building the teacher cache in %s (%d rows, layers %s)", path, key.num_rows, key.teacher_layers)
        _write_outputs(
            tmp / OUTPUTS_FILE, teacher, dataset, key.teacher_layers, batch_size, key.teacher_autocast_dtype,
            show_progress,
        )
        (tmp / KEY_FILE).write_text(json.dumps(asdict(key), indent=2))
        (tmp / COMPLETE_MARKER).write_text("")
    return TeacherCache.load(path)


def _incomplete_cache_error(path: Path) -> ValueError:
    return ValueError(
        f"`teacher_cache` {str(path)!r} holds no complete teacher cache (no {COMPLETE_MARKER} marker: a build was "
        "interrupted, or the folder is something else). Pass `--overwrite_teacher_cache` to rebuild it, or choose a "
        "new `teacher_cache` folder."
    )


def _is_replaceable(path: Path) -> bool:
    """Only an empty folder or one holding nothing but cache files may be replaced: never someone's other data."""
    return all(entry.name in (OUTPUTS_FILE, KEY_FILE, COMPLETE_MARKER) for entry in path.iterdir())


def load_or_build_teacher_cache(
    path: str | Path,
    teacher: PreTrainedModel,
    dataset: Dataset,
    method: str,
    teacher_layers: Sequence[int] = (),
    teacher_autocast_dtype: str | None = None,
    overwrite: bool = False,
    batch_size: int = 64,
    show_progress: bool = True,
) -> TeacherCache:
    """The cache at `path` if it was built from this teacher, training set, method and layers; else build it.

    Args:
        path: the cache folder (`teacher_cache`).
        teacher: the fine-tuned teacher, on the device and in the dtype the outputs are computed in (the key
            records the dtype).
        dataset: the tokenized training set (`input_ids`, and `attention_mask`/`token_type_ids` if present).
        method: the distillation method (keys the cache); one that is not `cacheable` cannot use one.
        teacher_layers: teacher hidden states (1-based, 0 = embeddings) whose [CLS] vector to store, in the order
            of PKD's layer map; empty for logits only.
        teacher_autocast_dtype: run the teacher under autocast in this dtype while caching.
        overwrite: replace a cache built from something else (or an incomplete one) instead of failing.
        batch_size: rows per teacher forward pass.
    """
    check_teacher_cache_settings(method, str(path), teacher_autocast_dtype)
    path = Path(path)
    key = expected_key(teacher, dataset, method, teacher_layers, teacher_autocast_dtype)
    if path.is_dir() and (path / COMPLETE_MARKER).is_file():
        cache = TeacherCache.load(path)
        differences = cache.key.differences(key)
        if not differences:
            logger.info("Reading teacher outputs from the cache in %s", path)
            return cache
        if not overwrite:
            raise ValueError(
                f"`teacher_cache` {str(path)!r} was built from something else than this run:\n  "
                + "\n  ".join(differences)
                + "\nPass `--overwrite_teacher_cache` to rebuild it, or choose another `teacher_cache` folder."
            )
        logger.warning("Rebuilding the teacher cache in %s: %s", path, "; ".join(differences))
    elif path.exists():
        if not path.is_dir() or not _is_replaceable(path):
            raise ValueError(
                f"`teacher_cache` {str(path)!r} exists and is not a teacher cache. Choose a new or empty folder."
            )
        if any(path.iterdir()) and not overwrite:
            raise _incomplete_cache_error(path)
    return build_teacher_cache(path, teacher, dataset, key, batch_size=batch_size, show_progress=show_progress)
