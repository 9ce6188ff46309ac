"""Export a saved hf_distill student to ONNX (fp32) and, optionally, dynamically quantized int8, checked against
PyTorch.

- `export_onnx(model_dir)`: writes `<output_dir or model_dir>/onnx/` with `model.onnx` (+ `model_quantized.onnx`),
  `config.json` (and the custom-code `*.py` files next to it) and the tokenizer: the folder layout Optimum's
  `ORTModelForSequenceClassification.from_pretrained(<dir>/onnx)` reads. The fp32 graph is run with onnxruntime on
  two padded batches of different shapes and its logits must match PyTorch's within `atol`.
- `evaluate_onnx(path, eval_dataset, collator, compute_metrics)`: dev metrics of an exported model, like
  `Trainer.evaluate` (the closing table's "student (ONNX fp32)" / "student (ONNX int8)" rows).
- `onnx_latency(path, batch)`: median milliseconds of one forward pass of `batch`, as `summary.measure_latency` for
  PyTorch.
- `python -m hf_distill.export <model_dir> [--quantize] [--output_dir DIR]`; `run_distill.py --export onnx
  [--quantize dynamic]` (`ExportArguments`) exports the student it saved and adds the ONNX rows to its closing table.

Every student exports: truncated BERT-family students (any head the Auto classes load), SPS (the second pass swaps
the Query and Key modules, which the tracer follows like any forward) and the BiLSTM (packed sequences export to an
ONNX `LSTM` with `sequence_lens`; the export traces an equivalent `run_lstm` without the stable sort and without the
packed final state, which the ONNX exporter cannot convert). That export-time pass is checked against the unmodified
PyTorch model by the equivalence check, so a divergence fails the export instead of shipping.

onnx, onnxruntime (and onnxscript, for the torch.export fallback) are the `onnx` extra: `pip install -e ".[onnx]"`.
"""

import argparse
import contextlib
import inspect
import json
import logging as py_logging
import platform
import shutil
import statistics
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    EvalPrediction,
    PreTrainedModel,
)
from transformers.utils import logging

from .io import atomic_directory

logger = logging.get_logger(__name__)

__all__ = [
    "ExportArguments",
    "MissingOnnxExtraError",
    "ONNX_EXTRA_MESSAGE",
    "check_export_arguments",
    "evaluate_onnx",
    "export_onnx",
    "load_onnx_session",
    "load_student",
    "onnx_latency",
]

ONNX_EXTRA_MESSAGE = '`--export onnx` needs the onnx extra: pip install -e ".[onnx]"'
ONNX_FOLDER = "onnx"
ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
DEFAULT_OPSET = 17  # native LayerNormalization; onnxruntime >= 1.14 runs it
# Sentences of different lengths, so each check batch is padded; any tokenizer splits them (unknown words -> [UNK]).
DEFAULT_SAMPLE_TEXTS = (
    "the movie was great fun",
    "a boring , dull film",
    "i loved the acting , the story and the plot , and the people were really very good",
    "bad",
    "the company said the market price of its shares rose two percent this year",
    "not good , not funny",
    "she liked it",
    "really enjoyed this story , one of the best of the year",
)
_LABEL_KEYS = ("labels", "label", "label_ids")


class MissingOnnxExtraError(ImportError, ValueError):
    """onnx or onnxruntime is not installed (the `onnx` extra). Both an ImportError and a ValueError."""


def _require_onnxruntime():
    """Import and return onnxruntime, with onnx, or raise `MissingOnnxExtraError` naming the extra."""
    try:
        import onnx  # noqa: F401  (onnxruntime.quantization needs it)
        import onnxruntime
    except ImportError as error:
        missing = getattr(error, "name", None) or str(error)
        raise MissingOnnxExtraError(f"{ONNX_EXTRA_MESSAGE} (cannot import {missing!r}).") from error
    return onnxruntime


# --- run_distill.py's arguments -----------------------------------------------------------------------------------

EXPORT_FORMATS = ("onnx",)
QUANTIZATION_MODES = ("dynamic",)


@dataclass
class ExportArguments:
    """`run_distill.py`: export the saved student after training; its rows join the closing table."""

    _argument_group_name = "Export"

    export: str | None = field(
        default=None,
        metadata={
            "help": "`onnx`: after training, write <output_dir>/onnx/model.onnx (checked against PyTorch, with the "
            "config and tokenizer beside it), score and time it on the dev set (row `student (ONNX fp32)`). Needs the "
            'onnx extra: pip install -e ".[onnx]".'
        },
    )
    quantize: str | None = field(
        default=None,
        metadata={
            "help": "`dynamic`: with `--export onnx`, also write model_quantized.onnx (dynamic int8 weights, row "
            "`student (ONNX int8)`)."
        },
    )

    def __post_init__(self):
        if self.export is not None and self.export not in EXPORT_FORMATS:
            raise ValueError(
                f"`--export` is {self.export!r}, but the only export format is 'onnx': pass `--export onnx`, or leave "
                "`--export` unset for no export."
            )
        if self.quantize is not None and self.quantize not in QUANTIZATION_MODES:
            raise ValueError(
                f"`--quantize` is {self.quantize!r}, but the only quantization is 'dynamic' (int8 weights): pass "
                "`--quantize dynamic`, or leave `--quantize` unset."
            )
        if self.quantize is not None and self.export is None:
            raise ValueError(
                "`--quantize dynamic` quantizes the ONNX export, but `--export` is not set: add `--export onnx`, or "
                "drop `--quantize`."
            )


def check_export_arguments(args: ExportArguments, *, adapter_only: bool) -> None:
    """Refuse, before training, an export that would fail once the student is saved: the onnx extra is not installed
    (`MissingOnnxExtraError`), or only a LoRA adapter is saved (`adapter_only`), which has no graph to export."""
    if args.export is None:
        return
    _require_onnxruntime()
    if adapter_only:
        raise ValueError(
            "`--export onnx` exports the saved student, but `--no_merge_student_peft` saves only its LoRA adapter. "
            "Drop `--no_merge_student_peft` (the merged student exports), or leave `--export` unset."
        )


# --- loading ------------------------------------------------------------------------------------------------------


def _auto_class(config) -> type:
    architectures = getattr(config, "architectures", None) or []
    for architecture in architectures:
        if architecture.endswith("ForTokenClassification"):
            return AutoModelForTokenClassification
        if architecture.endswith("ForSequenceClassification"):
            return AutoModelForSequenceClassification
    raise ValueError(
        f"The saved model's config lists architectures {architectures}, but ONNX export supports sequence- and "
        "token-classification heads (`...ForSequenceClassification`, `...ForTokenClassification`). Export the folder "
        "written by `save_pretrained` of a classification student."
    )


def load_student(model_dir: str | Path) -> tuple[PreTrainedModel, Any]:
    """The saved student (fp32, eval mode) and its tokenizer, through the Auto classes its config's `architectures`
    name. Importing `hf_distill.students` registers the SPS and BiLSTM classes, so no remote code is run."""
    from . import students  # noqa: F401  (registers the custom students with the Auto classes)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"`model_dir` {str(model_dir)!r} holds no config.json: pass a folder written by `save_pretrained`."
        )
    config = AutoConfig.from_pretrained(model_dir)
    model = _auto_class(config).from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def _is_bilstm(model: nn.Module) -> bool:
    return any(cls.__name__ == "BiLSTMPreTrainedModel" for cls in type(model).__mro__)


def _is_token_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForTokenClassification")


def _input_names(model: PreTrainedModel, tokenizer) -> list[str]:
    """`input_ids`, `attention_mask`, and `token_type_ids` when the tokenizer makes them and the model reads them
    (a single-sentence BiLSTM ignores them)."""
    names = ["input_ids", "attention_mask"]
    parameters = inspect.signature(model.forward).parameters
    reads_segments = "token_type_ids" in parameters and not (_is_bilstm(model) and not model.config.is_pair)
    if reads_segments and "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    return names


# --- export-time passes -------------------------------------------------------------------------------------------


def _bilstm_export_run_lstm(self, input_ids: torch.Tensor, selected: torch.Tensor):
    """`BiLSTMPreTrainedModel.run_lstm` for tracing, with the same results:

    - the selected positions move to the front by an (unstable) argsort of unique keys, as the ONNX exporter cannot
      convert a stable sort;
    - the final states are read from the packed outputs (forward: last real position, backward: the first), as the
      exporter cannot convert the packed LSTM's `h_n`. The packed sequence itself becomes the `sequence_lens` of an
      ONNX `LSTM`.

    The model's check that no row is empty (no real token, or an empty pair segment) runs in Python, so it is not in
    the graph: the ONNX model returns meaningless logits for such a row instead of raising.
    """
    lstm = self.lstm
    if lstm.num_layers != 1 or not lstm.bidirectional or not lstm.batch_first:
        raise ValueError("ONNX export of the BiLSTM student supports a one-layer bidirectional batch-first LSTM only.")
    length = input_ids.shape[1]
    lengths = selected.sum(dim=1)
    positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
    order = torch.argsort((~selected).to(torch.int64) * length + positions, dim=1)
    embeds = self.embeddings(input_ids.gather(1, order))
    packed = pack_padded_sequence(embeds, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_outputs, _ = lstm(packed)
    outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=length)

    hidden = lstm.hidden_size
    last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    final_states = torch.stack([outputs.gather(1, last).squeeze(1)[:, :hidden], outputs[:, 0, hidden:]])

    inverse = torch.argsort(order, dim=1).unsqueeze(-1)
    keep = selected.unsqueeze(-1)
    embeds, outputs = (
        states.gather(1, inverse.expand(-1, -1, states.shape[-1])) * keep for states in (embeds, outputs)
    )
    return embeds, outputs, final_states


@contextlib.contextmanager
def _export_passes(model: nn.Module) -> Iterator[None]:
    """Install the export-time pass on `model`'s BiLSTM instances; removed on exit."""
    patched = []
    for module in model.modules():
        if _is_bilstm(module):
            module.run_lstm = types.MethodType(_bilstm_export_run_lstm, module)
            patched.append((module, "run_lstm"))
    try:
        yield
    finally:
        for module, name in patched:
            delattr(module, name)


class _LogitsOnly(nn.Module):
    """The student as a function of its input tensors returning the logits (what the ONNX graph computes)."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.model(**inputs, output_hidden_states=False, return_dict=True).logits


def _export_graph(
    model: PreTrainedModel, example: dict[str, torch.Tensor], input_names: list[str], path: Path, opset: int | None
) -> str:
    """Write `model`'s logits graph to `path`; returns the exporter used. The TorchScript exporter first (with the
    export-time passes), then torch.export (`dynamo=True`) if it fails."""
    wrapper = _LogitsOnly(model).eval()
    args = tuple(example[name] for name in input_names)
    token_axes = {0: "batch", 1: "sequence"}
    dynamic_axes = {name: token_axes for name in input_names}
    dynamic_axes["logits"] = token_axes if _is_token_classifier(model) else {0: "batch"}
    errors = []
    with _export_passes(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings of the legacy exporter
        try:
            torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=["logits"],
                dynamic_axes=dynamic_axes, opset_version=opset or DEFAULT_OPSET, do_constant_folding=True,
                dynamo=False,
            )
            return "torchscript"
        except Exception as error:  # noqa: BLE001  (any exporter failure falls back to torch.export)
            errors.append(f"TorchScript exporter: {type(error).__name__}: {error}")
            path.unlink(missing_ok=True)
        try:
            import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)

            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
            torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=["logits"],
                dynamic_shapes=tuple({0: batch, 1: sequence} for _ in input_names), opset_version=opset,
                dynamo=True, external_data=large, verbose=False,
            )
            return "dynamo"
        except Exception as error:  # noqa: BLE001
            errors.append(f"torch.export exporter: {type(error).__name__}: {str(error)[-2000:]}")
            for leftover in path.parent.glob(f"{path.name}*"):
                leftover.unlink()
    raise ValueError(
        f"ONNX export of {type(model).__name__} failed with both torch.onnx exporters.\n" + "\n".join(errors)
    )


# --- running ------------------------------------------------------------------------------------------------------


def load_onnx_session(path: str | Path, num_threads: int | None = None):
    """An onnxruntime CPU `InferenceSession` of `path` (an .onnx file, or a folder holding `model.onnx`), with
    `num_threads` intra-op threads (default: torch's current thread count, as `measure_latency` uses)."""
    ort = _require_onnxruntime()
    path = Path(path)
    if path.is_dir():
        path = path / ONNX_FILE
    if not path.is_file():
        raise ValueError(f"No ONNX model at {str(path)!r}: pass an .onnx file or a folder holding {ONNX_FILE}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin for the next run by default; ours share the cores with PyTorch (the models timed
    # beside them, the training process), whose next forward they would slow (on 2 cores, a PyTorch forward run right
    # after an onnxruntime one took as long for the 3-layer student as for the 6-layer teacher).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _session(path_or_session, num_threads: int | None = None):
    if hasattr(path_or_session, "get_inputs"):  # already an InferenceSession
        return path_or_session
    return load_onnx_session(path_or_session, num_threads)


def _feeds(session, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The session's inputs from a batch of tensors or arrays, as int64 arrays."""
    feeds = {}
    for node in session.get_inputs():
        if node.name not in batch:
            raise ValueError(
                f"The ONNX model needs input {node.name!r}, but the batch holds {sorted(batch)}. Tokenize with the "
                "exported tokenizer (it returns every input the model reads)."
            )
        value = batch[node.name]
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        feeds[node.name] = value.astype(np.int64, copy=False)
    return feeds


def _run(session, batch: dict[str, Any]) -> np.ndarray:
    return session.run(["logits"], _feeds(session, batch))[0]


def onnx_latency(
    path: str | Path | Any,
    batch: dict[str, Any],
    *,
    warmup: int = 3,
    repeats: int = 10,
    num_threads: int | None = None,
) -> float:
    """Median milliseconds of `repeats` onnxruntime forward passes of `batch` (e.g. `summary.make_latency_batch`),
    each timed on its own, after `warmup` untimed passes; with torch's current thread count unless `num_threads`
    (as `summary.measure_latency` runs PyTorch). `path`: an .onnx file, its folder, or an `InferenceSession`."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"`warmup` must be >= 0 and `repeats` >= 1, got warmup={warmup}, repeats={repeats}.")
    session = _session(path, num_threads)
    feeds = _feeds(session, batch)
    for _ in range(warmup):
        session.run(["logits"], feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(["logits"], feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _pad_concat(arrays: list[np.ndarray], pad_value) -> np.ndarray:
    """Concatenate along the batch axis, padding axis 1 to the longest (token classification), as `Trainer` does."""
    if arrays[0].ndim < 2 or len({a.shape[1] for a in arrays}) == 1:
        return np.concatenate(arrays, axis=0)
    width = max(a.shape[1] for a in arrays)
    padded = []
    for array in arrays:
        pad = [(0, 0)] * array.ndim
        pad[1] = (0, width - array.shape[1])
        padded.append(np.pad(array, pad, constant_values=pad_value))
    return np.concatenate(padded, axis=0)


def evaluate_onnx(
    path: str | Path | Any,
    eval_dataset,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    compute_metrics: Callable[[EvalPrediction], dict[str, float]],
    *,
    batch_size: int = 32,
    metric_key_prefix: str = "eval",
    num_threads: int | None = None,
) -> dict[str, float]:
    """Metrics of the exported model on a tokenized dataset, like `Trainer.evaluate(metric_key_prefix="eval")`.

    Batches of `batch_size` rows (in order) go through `collator` (e.g. `DataCollatorWithPadding`; the rows keep
    only the model's inputs and the label column, as `Trainer` drops unused columns), then onnxruntime; the logits and
    labels (token classification: padded with -100 to a common length) go to `compute_metrics` (pass
    `hf_distill.data.build_compute_metrics(task)`). Keys are prefixed with `f"{metric_key_prefix}_"`.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    session = _session(path, num_threads)
    input_names = [node.name for node in session.get_inputs()]
    columns = list(getattr(eval_dataset, "column_names", None) or eval_dataset[0].keys())
    label_key = next((key for key in _LABEL_KEYS if key in columns), None)
    if label_key is None:
        raise ValueError(f"`eval_dataset` has no label column ({', '.join(_LABEL_KEYS)}); its columns are {columns}.")
    keep = [name for name in columns if name in input_names or name == label_key]
    logits, labels = [], []
    for start in range(0, len(eval_dataset), batch_size):
        rows = eval_dataset[start : start + batch_size]
        if isinstance(rows, dict):  # a datasets.Dataset slice: columns of lists
            rows = [{name: rows[name][i] for name in keep} for i in range(len(rows[keep[0]]))]
        else:
            rows = [{name: row[name] for name in keep} for row in rows]
        batch = collator(rows)
        batch_labels = next(batch[key] for key in _LABEL_KEYS if key in batch)
        logits.append(_run(session, batch))
        batch_labels = batch_labels.numpy() if isinstance(batch_labels, torch.Tensor) else np.asarray(batch_labels)
        labels.append(batch_labels)
    prediction = EvalPrediction(predictions=_pad_concat(logits, -100.0), label_ids=_pad_concat(labels, -100))
    metrics = compute_metrics(prediction)
    return {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}


# --- checks -------------------------------------------------------------------------------------------------------


def _check_batches(
    tokenizer, texts: Sequence[str | tuple[str, str]], max_length: int
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The trace example (every text, padded) and two padded check batches of different shapes (the shorter and
    the longer half of the texts by token count)."""

    def encode(subset):
        pairs = [text if isinstance(text, (tuple, list)) else (text,) for text in subset]
        columns = list(zip(*pairs))
        return dict(
            tokenizer(*[list(c) for c in columns], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
        )

    if len(texts) < 2:
        raise ValueError(f"`sample_texts` needs at least 2 texts (two check batches), got {len(texts)}.")
    lengths = [int(mask.sum()) for mask in encode(texts)["attention_mask"]]
    ranked = [texts[i] for i in sorted(range(len(texts)), key=lengths.__getitem__)]
    half = len(ranked) // 2
    return encode(texts), [encode(ranked[:half]), encode(ranked[half:])]


def _real_positions(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token logits (B, L, C) at the real positions (N, C); sequence logits unchanged."""
    return logits[mask.astype(bool)] if logits.ndim == 3 else logits


def _compare(session, model: PreTrainedModel, batches: list[dict[str, torch.Tensor]]) -> tuple[float, float | None]:
    """Max |Δlogit| over the batches (all positions) and the argmax agreement (real positions; None for
    regression)."""
    max_diff, agree, total = 0.0, 0, 0
    for batch in batches:
        with torch.inference_mode():
            expected = model(**batch).logits.float().numpy()
        actual = _run(session, batch)
        if actual.shape != expected.shape:
            raise ValueError(f"The ONNX logits have shape {actual.shape}, PyTorch's {expected.shape}.")
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
        mask = batch["attention_mask"].numpy()
        actual, expected = _real_positions(actual, mask), _real_positions(expected, mask)
        agree += int((actual.argmax(-1) == expected.argmax(-1)).sum())
        total += expected.shape[0]
    regression = model.config.num_labels == 1
    return max_diff, None if regression else agree / total


def _size_mb(folder: Path, name: str) -> float:
    """MiB of the ONNX file `name` with its external-data files, if any."""
    return sum(file.stat().st_size for file in folder.glob(f"{name}*") if file.is_file()) / 2**20


def _int8_weight_type():
    """QInt8 weights (U8S8) where the CPU multiplies them without saturation (VNNI, ARM), else QUInt8 (U8U8): on
    AVX2 without VNNI onnxruntime's U8S8 kernels can saturate (its quantization docs)."""
    from onnxruntime.quantization import QuantType

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return QuantType.QInt8
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return QuantType.QInt8
    return QuantType.QInt8 if ("avx512_vnni" in flags or "avx_vnni" in flags) else QuantType.QUInt8


def _inline_shared_weights(model_proto) -> None:
    """Point the consumers of `Identity(initializer)` nodes at the initializer itself and drop those nodes.

    The TorchScript exporter shares a weight used twice (the SPS layers' second pass) through Identity nodes;
    `quantize_dynamic` only quantizes a MatMul/Gather whose weight is an initializer, so without this the second use
    stayed fp32 and the int8 file kept both copies.
    """
    graph = model_proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    graph_outputs = {output.name for output in graph.output}
    aliases = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in graph_outputs
    }
    if not aliases:
        return
    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in aliases)]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in aliases:
                node.input[i] = aliases[name]
    del graph.node[:]
    graph.node.extend(kept)


class _DropMessage(py_logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: py_logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _quantize(fp32_path: Path, int8_path: Path):
    """Dynamic int8 quantization of `fp32_path` into `int8_path`; returns the weight QuantType used."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    model_proto = onnx.load(str(fp32_path))
    _inline_shared_weights(model_proto)
    weight_type = _int8_weight_type()
    # onnxruntime logs a root-logger suggestion to pre-process for static quantization on every call.
    root = py_logging.getLogger()
    advice = _DropMessage("pre-processing before quantization")
    root.addFilter(advice)
    try:
        quantize_dynamic(model_proto, int8_path, weight_type=weight_type)
    finally:
        root.removeFilter(advice)
    return weight_type


def _copy_config_and_code(model_dir: Path, folder: Path) -> None:
    """config.json and the custom-code files `save_pretrained` copied (SPS, BiLSTM) next to the ONNX files."""
    shutil.copy2(model_dir / "config.json", folder / "config.json")
    for code in model_dir.glob("*.py"):
        shutil.copy2(code, folder / code.name)


# --- export -------------------------------------------------------------------------------------------------------


def export_onnx(
    model_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    quantize: bool = False,
    sample_texts: Sequence[str | tuple[str, str]] | None = None,
    atol: float = 1e-4,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export the student saved in `model_dir` to `<output_dir or model_dir>/onnx/model.onnx` (fp32) and, with
    `quantize`, `model_quantized.onnx` (int8 weights, `onnxruntime.quantization.quantize_dynamic`); config.json, the
    custom-code files and the tokenizer are written beside them. The folder is built under a temporary name and
    renamed into place once complete and checked (a failed export leaves what was there).

    The graph takes `input_ids`, `attention_mask` (and `token_type_ids` when the model reads them), int64 of shape
    (batch, sequence), both axes dynamic, and returns `logits`. It is run on two padded batches of `sample_texts`
    (entries may be `(text_a, text_b)` pairs; default: a few English sentences, pairs for a pair BiLSTM) and must
    match PyTorch within `atol` (else ValueError). For int8 the max |Δlogit| and argmax agreement are reported, not
    enforced. `opset`: the ONNX opset (default 17).

    Returns `onnx_path`, `quantized_path` (None without `quantize`), `max_abs_diff_fp32`, `max_abs_diff_int8`,
    `argmax_agreement_int8` (None without `quantize`, or for regression), `size_mb_fp32`, `size_mb_int8` and
    `exporter` ("torchscript" or "dynamo").
    """
    _require_onnxruntime()
    model_dir = Path(model_dir)
    target = Path(output_dir if output_dir is not None else model_dir) / ONNX_FOLDER
    model, tokenizer = load_student(model_dir)
    if sample_texts is None:
        sample_texts = list(DEFAULT_SAMPLE_TEXTS)
        if getattr(model.config, "is_pair", False):
            sample_texts = list(zip(sample_texts, sample_texts[1:] + sample_texts[:1]))
    max_length = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512) or 512, 512)
    input_names = _input_names(model, tokenizer)
    example, batches = _check_batches(tokenizer, sample_texts, max_length)
    batches = [{name: batch[name] for name in input_names} for batch in batches]
    example = {name: example[name] for name in input_names}

    result: dict[str, Any] = {
        "quantized_path": None, "max_abs_diff_int8": None, "argmax_agreement_int8": None, "size_mb_int8": None,
    }
    with atomic_directory(target) as folder:
        onnx_path = folder / ONNX_FILE
        result["exporter"] = _export_graph(model, example, input_names, onnx_path, opset)
        session = load_onnx_session(onnx_path)
        max_diff, _ = _compare(session, model, batches)
        logger.info(f"ONNX fp32 ({result['exporter']} exporter): max |Δlogit| vs PyTorch = {max_diff:.3g}")
        if not max_diff <= atol:
            raise ValueError(
                f"The exported ONNX model's logits differ from PyTorch's by up to {max_diff:.3g}, above the tolerance "
                f"`atol`={atol:g}. Nothing was written; raise `atol` only if such a difference is acceptable."
            )
        result.update(max_abs_diff_fp32=max_diff, size_mb_fp32=_size_mb(folder, ONNX_FILE))
        if quantize:
            weight_type = _quantize(onnx_path, folder / QUANTIZED_FILE)
            max_diff_int8, agreement = _compare(load_onnx_session(folder / QUANTIZED_FILE), model, batches)
            result.update(
                max_abs_diff_int8=max_diff_int8, argmax_agreement_int8=agreement,
                size_mb_int8=_size_mb(folder, QUANTIZED_FILE),
            )
            logger.info(
                f"ONNX int8 ({weight_type.name} weights): max |Δlogit| = {max_diff_int8:.3g}, argmax agreement = "
                f"{agreement}, {result['size_mb_int8']:.3g} MB vs {result['size_mb_fp32']:.3g} MB fp32"
            )
        _copy_config_and_code(model_dir, folder)
        tokenizer.save_pretrained(folder)
    result["onnx_path"] = str(target / ONNX_FILE)
    if quantize:
        result["quantized_path"] = str(target / QUANTIZED_FILE)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m hf_distill.export", description="Export a saved hf_distill student to ONNX (fp32, int8)."
    )
    parser.add_argument("model_dir", help="folder written by save_pretrained (model + tokenizer)")
    parser.add_argument("--output_dir", default=None, help="write <output_dir>/onnx (default: <model_dir>/onnx)")
    parser.add_argument("--quantize", action="store_true", help="also write model_quantized.onnx (dynamic int8)")
    parser.add_argument("--atol", type=float, default=1e-4, help="max |Δlogit| allowed between ONNX fp32 and PyTorch")
    parser.add_argument("--opset", type=int, default=None, help=f"ONNX opset (default {DEFAULT_OPSET})")
    args = parser.parse_args(argv)
    result = export_onnx(args.model_dir, args.output_dir, quantize=args.quantize, atol=args.atol, opset=args.opset)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
