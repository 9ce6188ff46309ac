#!/usr/bin/env python
"""Deployment: a trained teacher and its distilled student in PyTorch fp32 and ONNX (fp32, dynamic int8), on CPU.

For SST-2 (default: transfer_sst2.py's teacher and its seed-42 KD + transfer student) or CoNLL-2003 (`--task
conll2003`, default: glue_accuracy.py --quick's teacher and seed-42 KD student), each of

    teacher PyTorch fp32 · teacher ONNX fp32 · teacher ONNX int8 · student PyTorch fp32 · student ONNX fp32 ·
    student ONNX int8

is scored on the full dev set (PyTorch: `hf_distill.cli.evaluate_model`, as run_distill.py scores its teacher;
ONNX: `hf_distill.export.evaluate_onnx`), sized on disk, and timed on batches of 1×64 and 32×64 tokens: after a
warm-up, one forward per variant per round, the variants interleaved round-robin (each round starting one further
along), so a load burst on a shared machine hits all of them alike; the median over the rounds counts. PyTorch and
onnxruntime run on `--threads` intra-op threads. The ONNX files are exported once under `--cache_dir` (reused while
the source weights are unchanged). Writes `benchmarks/results/deploy_<task>{.json,.md}`:

    python benchmarks/deploy.py                          # SST-2, after transfer_sst2.py
    python benchmarks/deploy.py --task conll2003         # after glue_accuracy.py --quick --tasks conll2003
    python benchmarks/deploy.py --teacher_dir T --student_dir S --threads 4
"""

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from glue_accuracy import LATENCY_SEQ, MODES, data_dir, git_state, results_header, write_results  # noqa: E402

logger = logging.getLogger("deploy")
CACHE = REPO / "benchmarks" / "cache"
# The models each task's benchmark leaves in its cache (transfer_sst2.py; glue_accuracy.py --quick --tasks conll2003).
DEFAULT_MODELS = {
    "sst2": (CACHE / "transfer_sst2" / "teacher", CACHE / "transfer_sst2" / "kd_transfer_16000" / "seed42"),
    "conll2003": (CACHE / "quick" / "conll2003" / "teacher", CACHE / "quick" / "conll2003" / "kd" / "seed42"),
}
VARIANTS = {  # name: (model, runtime)
    "teacher PyTorch fp32": ("teacher", "pytorch"),
    "teacher ONNX fp32": ("teacher", "fp32"),
    "teacher ONNX int8": ("teacher", "int8"),
    "student PyTorch fp32": ("student", "pytorch"),
    "student ONNX fp32": ("student", "fp32"),
    "student ONNX int8": ("student", "int8"),
}
BASELINE = "teacher PyTorch fp32"
TARGET_VARIANT = "student ONNX int8"
TARGET_BATCH = 32  # the batch size the speed-up target is set at; the others are reported
TARGET_METRIC_GAP = 1.0  # most dev-metric points the int8 student may lose to the PyTorch student


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", choices=list(DEFAULT_MODELS))
    parser.add_argument("--teacher_dir", default=None, help="Saved teacher (default: see above, per task).")
    parser.add_argument("--student_dir", default=None, help="Saved student (default: see above, per task).")
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--conll_dir", default=str(REPO.parent / "shared" / "data" / "conll2003"))
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="Dev rows are truncated to this (default: the length the models were trained at, 64 "
                        "for SST-2, 128 for CoNLL-2003).")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--batch_sizes", default="1,32", help=f"Timed batch sizes, each of {LATENCY_SEQ} tokens.")
    parser.add_argument("--rounds", type=int, default=30, help="Timed forwards per variant and batch size.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed forwards per variant and batch size first.")
    parser.add_argument("--threads", type=int, default=2, help="Intra-op threads of PyTorch and onnxruntime.")
    parser.add_argument("--target_speedup", type=float, default=4.0,
                        help=f"`{TARGET_VARIANT}` should be at least this many times faster than `{BASELINE}` at "
                        f"batch {TARGET_BATCH}×{LATENCY_SEQ} (the issue's target).")
    parser.add_argument("--cache_dir", default=None, help="ONNX exports (default: benchmarks/cache/deploy_<task>).")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    teacher, student = DEFAULT_MODELS[args.task]
    args.teacher_dir = Path(args.teacher_dir or teacher)
    args.student_dir = Path(args.student_dir or student)
    args.max_seq_length = args.max_seq_length or MODES["quick"][args.task]["seq"]
    args.batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    args.cache_dir = Path(args.cache_dir or CACHE / f"deploy_{args.task}")
    for name in ("teacher_dir", "student_dir"):
        if not (getattr(args, name) / "config.json").is_file():
            raise SystemExit(f"--{name} {getattr(args, name)} holds no saved model (config.json); train it first "
                             "(see the module doc) or pass the folder.")
    return args


# The CPU's vector and matrix instruction sets int8 (VNNI, AMX-INT8) and bf16 (AVX512-BF16, AMX-BF16) speed depend on,
# as /proc/cpuinfo names them; AVX2 and AVX512F are the baselines.
SPEED_CPU_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def machine(threads: int) -> dict:
    import onnxruntime
    import torch
    import transformers

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {"cpu": cpu or platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": threads,
            # What int8 and bf16 speed depend on: these differ between machines of the same CPU name.
            "cpu_features": [flag for flag in SPEED_CPU_FLAGS if flag in flags],
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def weights_fingerprint(model_dir: Path) -> list:
    from hf_distill.summary import WEIGHT_FILE_PATTERNS

    files = sorted(file for pattern in WEIGHT_FILE_PATTERNS for file in model_dir.glob(pattern))
    return [[file.name, file.stat().st_size, file.stat().st_mtime_ns] for file in files]


def exported(model_dir: Path, folder: Path) -> dict:
    """`export_onnx` of `model_dir` into `folder/onnx` (fp32 and int8), reused while its weights are unchanged."""
    from hf_distill.export import export_onnx

    source = {"model_dir": str(model_dir.resolve()), "weights": weights_fingerprint(model_dir)}
    record = folder / "export.json"
    if record.exists() and json.loads(record.read_text())["source"] == source:
        logger.info("cached export: %s", folder)
        return json.loads(record.read_text())["export"]
    logger.info("exporting %s to %s", model_dir, folder / "onnx")
    result = export_onnx(model_dir, folder, quantize=True)
    record.write_text(json.dumps({"source": source, "export": result}, indent=2))
    return result


def dev_data(args: argparse.Namespace, tokenizer):
    """The full dev split tokenized as the benchmarks train (`hf_distill.cli.load_data`), its collator and task."""
    from hf_distill.cli import DataArguments, load_data, make_collator

    data_args = DataArguments(task_name=args.task, data_dir=data_dir(args, args.task),
                              max_seq_length=args.max_seq_length, max_train_samples=1)
    _, tokenized, task = load_data(data_args, tokenizer, seed=42)
    return tokenized["validation"], make_collator(tokenizer, data_args, task), task


def interleaved_latency(runners: dict[str, Callable[[], float]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of `rounds` forwards of each runner, one per runner per round; round r starts at runner r."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    timings: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            timings[name].append(runners[name]())
    return timings


def model_variants(args: argparse.Namespace, role: str, model_dir: Path, eval_args) -> list[tuple[dict, dict]]:
    """The `role` ("teacher", "student") rows of `VARIANTS`, each scored on the dev set and sized, with its timed
    forward per batch size (`{batch_size: () -> ms}`)."""
    from hf_distill.cli import evaluate_model
    from hf_distill.data import build_compute_metrics
    from hf_distill.export import evaluate_onnx, load_onnx_session, load_student, onnx_latency
    from hf_distill.summary import count_parameters, directory_size_mb, make_latency_batch, measure_latency

    model, tokenizer = load_student(model_dir)
    dev, collator, task = dev_data(args, tokenizer)
    export = exported(model_dir, args.cache_dir / role)
    batches = {size: make_latency_batch(tokenizer, size, LATENCY_SEQ, "cpu", pair=task.is_pair)
               for size in args.batch_sizes}
    variants = []
    for name, runtime in ((name, runtime) for name, (owner, runtime) in VARIANTS.items() if owner == role):
        logger.info("evaluating %s", name)
        row = {"variant": name, "model_dir": str(model_dir), "parameters_m": count_parameters(model) / 1e6}
        if runtime == "pytorch":
            metrics = evaluate_model(model, eval_args, dev, collator, task)
            row["size_mb"] = directory_size_mb(model_dir)
            runners = {size: (lambda b=batch: measure_latency(model, b, warmup=0, repeats=1))
                       for size, batch in batches.items()}
        else:
            session = load_onnx_session(export["onnx_path" if runtime == "fp32" else "quantized_path"],
                                        num_threads=args.threads)
            metrics = evaluate_onnx(session, dev, collator, build_compute_metrics(task),
                                    batch_size=args.eval_batch_size)
            row["size_mb"] = export[f"size_mb_{runtime}"]
            runners = {size: (lambda s=session, b=batch: onnx_latency(s, b, warmup=0, repeats=1))
                       for size, batch in batches.items()}
            checks = ("max_abs_diff_int8", "argmax_agreement_int8") if runtime == "int8" else ("max_abs_diff_fp32",)
            row.update({key: export[key] for key in checks})  # the export's comparison with PyTorch
        row.update(metric=task.main_metric, dev_metric=100 * metrics[f"eval_{task.main_metric}"], dev_rows=len(dev),
                   eval_metrics=metrics)
        variants.append((row, runners))
    return variants


def main(argv=None) -> dict:
    args = parse_args(argv)
    # INFO for this script only: onnxruntime's quantizer logs every tensor it skips at INFO on the root logger.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.WARNING)
    logger.setLevel(logging.INFO)
    import torch
    from transformers import TrainingArguments

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    eval_args = TrainingArguments(output_dir=str(args.cache_dir / "eval"), report_to="none", disable_tqdm=True,
                                  per_device_eval_batch_size=args.eval_batch_size, use_cpu=True)
    variants = [*model_variants(args, "teacher", args.teacher_dir, eval_args),
                *model_variants(args, "student", args.student_dir, eval_args)]
    rows = [row for row, _ in variants]  # VARIANTS' order: the baseline first
    for size in args.batch_sizes:
        logger.info("timing batch %d×%d: %d rounds", size, LATENCY_SEQ, args.rounds)
        timings = interleaved_latency({row["variant"]: runners[size] for row, runners in variants}, args.rounds,
                                      args.warmup)
        for row in rows:
            row.setdefault("latency_all_ms", {})[size] = timings[row["variant"]]
            row.setdefault("latency_ms", {})[size] = statistics.median(timings[row["variant"]])
            row.setdefault("speedup", {})[size] = rows[0]["latency_ms"][size] / row["latency_ms"][size]
    commit, dirty = git_state()
    meta = {"command": " ".join(["python benchmarks/deploy.py", *(sys.argv[1:] if argv is None else argv)]),
            "git_commit": commit, "git_dirty": dirty, "task": args.task, "dev_rows": rows[0]["dev_rows"],
            "max_seq_length": args.max_seq_length, "latency_seq": LATENCY_SEQ, "batch_sizes": args.batch_sizes,
            "rounds": args.rounds, "warmup": args.warmup, "machine": machine(args.threads),
            "teacher_dir": str(args.teacher_dir), "student_dir": str(args.student_dir),
            "cache_dir": str(args.cache_dir), "wall_time_min": (time.perf_counter() - start) / 60}
    targets = check_targets(rows, args.target_speedup)
    payload = {"meta": meta, "rows": rows, "targets": targets}
    write_results(args.results_dir, f"deploy_{args.task}", payload, markdown(rows, targets, meta))
    return payload


def check_targets(rows: list[dict], target_speedup: float) -> list[dict]:
    """The issue's deployment targets (the int8 student several times faster than the teacher at batch
    `TARGET_BATCH`, and within `TARGET_METRIC_GAP` points of the PyTorch student), and a check that ONNX fp32 scores
    as PyTorch fp32 does."""
    by_name = {row["variant"]: row for row in rows}
    targets = []
    speedup = by_name[TARGET_VARIANT]["speedup"].get(TARGET_BATCH)
    if speedup is not None:
        targets.append({"kind": "target", "value": speedup, "threshold": target_speedup, "unit": "×",
                        "met": speedup >= target_speedup,
                        "target": f"{TARGET_VARIANT} ≥ {target_speedup:g}× faster than {BASELINE}, batch "
                        f"{TARGET_BATCH}×{LATENCY_SEQ}"})
    loss = by_name["student PyTorch fp32"]["dev_metric"] - by_name[TARGET_VARIANT]["dev_metric"]
    targets.append({"kind": "target", "value": -loss, "threshold": -TARGET_METRIC_GAP,
                    "met": loss <= TARGET_METRIC_GAP,
                    "target": f"{TARGET_VARIANT} dev metric at most {TARGET_METRIC_GAP:g} below student PyTorch fp32"})
    for model in ("teacher", "student"):
        gap = by_name[f"{model} ONNX fp32"]["dev_metric"] - by_name[f"{model} PyTorch fp32"]["dev_metric"]
        targets.append({"kind": "check", "target": f"{model} ONNX fp32 dev metric within ±0.1 of PyTorch fp32",
                        "value": gap, "threshold": 0.1, "met": abs(gap) <= 0.1})
    return targets


def markdown(rows: list[dict], targets: list[dict], meta: dict) -> str:
    sizes, seq, host = meta["batch_sizes"], meta["latency_seq"], meta["machine"]
    lines = [
        *results_header(f"Deployment on CPU: {meta['task']} teacher and student, PyTorch and ONNX", meta),
        f"Machine: {host['cpu']} ({host['cpu_count']} cores; {', '.join(host.get('cpu_features', [])) or 'no AVX2'}); "
        "intra-op threads (PyTorch and onnxruntime): "
        f"{host['threads']}; torch {host['torch']}, onnxruntime {host['onnxruntime']}, transformers "
        f"{host['transformers']}.  ",
        f"Teacher: `{meta['teacher_dir']}`; student: `{meta['student_dir']}`.", "",
        f"Dev metric ({rows[0]['metric']}) on the full dev set ({meta['dev_rows']} rows, max length "
        f"{meta['max_seq_length']}). Size: the weight files (PyTorch: safetensors; ONNX: the .onnx file), MiB. "
        f"Latency: one forward of a batch of B×{seq} real tokens, median of {meta['rounds']} forwards per variant "
        f"after {meta['warmup']} warm-up forwards, the variants interleaved round-robin; speed-up over "
        f"{BASELINE}. ONNX int8: dynamic quantization (int8 weights, `hf_distill.export`).", "",
        "| variant | dev | size (MB) | params (M) | "
        + " | ".join(f"latency {size}×{seq} (ms) | speed-up {size}×{seq}" for size in sizes) + " |",
        "|---|---|---|---|" + "---|---|" * len(sizes),
    ]
    for row in rows:
        latency = " | ".join(f"{row['latency_ms'][size]:.1f} | {row['speedup'][size]:.2f}×" for size in sizes)
        lines.append(f"| {row['variant']} | {row['dev_metric']:.2f} | {row['size_mb']:.1f} | "
                     f"{row['parameters_m']:.1f} | {latency} |")
    lines += ["", "## Targets", ""]
    for t in targets:
        value = f"{t['value']:.2f}×" if t.get("unit") == "×" else f"{t['value']:+.2f} points"
        lines.append(f"- {t['kind']}: {t['target']}: {value} → **{'met' if t['met'] else 'not met'}**")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
