#!/usr/bin/env python
"""KD from a bf16 teacher, and into a student trained in bf16, against KD in fp32: accuracy and wall time, on SST-2.

transfer_sst2.py's teacher (all-MiniLM-L6-v2 fine-tuned on the first 4,000 SST-2 rows; `<transfer_cache_dir>/teacher`,
reused when there, else trained there) distils into its first 3 layers exactly as that benchmark's `kd` cell (α = 1,
T = 2, 3 epochs, lr 1e-4, through the teacher cache), per seed and per precision setting:
- `--teacher_dtype float32`, fp32 student (today's default on hardware without bf16);
- `--teacher_dtype bfloat16`, fp32 student (what `auto` picks on bf16 hardware): only the teacher's outputs change;
- `--teacher_dtype bfloat16` and `--bf16` (the student trained under Trainer's bf16 autocast): the CPU fast path.
The student starts from the teacher's fp32 weights in every row. Also reported: the teacher's dev accuracy in each
dtype, how far the two caches' logits are apart, and each row's wall time. Writes
`benchmarks/results/teacher_dtype_sst2{.json,.md}`:

    python benchmarks/teacher_dtype_sst2.py

On a CPU without bf16 matrix units (AVX2) bf16 is emulated and slower, which does not change what it computes: the
accuracy comparison holds on any machine, the wall times only where bf16 is native (AMX, AVX512-BF16, GPUs).
"""

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from glue_accuracy import format_value, git_state, results_header, write_results  # noqa: E402
from transfer_sst2 import kd_cell, shared_teacher  # noqa: E402

logger = logging.getLogger("teacher_dtype_sst2")
DTYPES = ("float32", "bfloat16")
# (teacher dtype, student trained under `--bf16`), in table order; the last two share the bf16 teacher cache.
SETTINGS = (("float32", False), ("bfloat16", False), ("bfloat16", True))
# Mean student accuracies this far apart or less count as equal. This cell's seed std is 0.20-0.26 points
# (transfer_sst2.md, ensemble_sst2.md), so the difference of two 3-seed means has a standard error of about 0.2: the
# band is about 2.5 of them.
NOISE_POINTS = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "teacher_dtype_sst2"))
    parser.add_argument("--transfer_cache_dir", default=str(REPO / "benchmarks" / "cache" / "transfer_sst2"),
                        help="transfer_sst2.py's --cache_dir: its teacher is shared.")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    return parser.parse_args(argv)


def cache_logit_gap(float_cache: Path, half_cache: Path) -> dict:
    """Max |Δ| of the two caches' logits and the share of rows whose argmax agrees."""
    import torch

    from hf_distill.teacher_cache import TeacherCache

    caches = [TeacherCache.load(path) for path in (float_cache, half_cache)]
    rows = torch.arange(len(caches[0]))
    logits = [cache.lookup(rows).logits for cache in caches]
    return {"max_abs_logit_diff": (logits[0] - logits[1]).abs().max().item(),
            "argmax_agreement": (logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean().item(),
            "dtypes": [cache.key.teacher_dtype for cache in caches]}


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    start = time.perf_counter()
    teacher_dir = Path(args.transfer_cache_dir) / "teacher"
    data, _ = shared_teacher(args.glue_dir, teacher_dir)
    cache = Path(args.cache_dir)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    # Trainer refuses `--bf16` on a machine without a GPU unless told to train on the CPU.
    bf16_flags = ["--bf16", *([] if torch.cuda.is_available() else ["--use_cpu", "true"])]
    rows = []
    for dtype, bf16_student in SETTINGS:
        student_flags = bf16_flags if bf16_student else []
        folder = cache / (f"{dtype}_bf16_student" if bf16_student else dtype)
        cells = [kd_cell([teacher_dir], [*data, "--teacher_dtype", dtype, *student_flags],
                         cache / f"teacher_cache_{dtype}", seed, folder / f"seed{seed}") for seed in seeds]
        ok = [cell for cell in cells if cell["status"] == "ok"]
        values = [100 * cell["results"]["eval_accuracy"] for cell in ok]
        teacher_values = {100 * cell["results"]["teacher_eval_accuracy"] for cell in ok}
        rows.append({"teacher_dtype": dtype, "bf16_student": bf16_student, "accuracy": values, "seeds_ok": len(ok),
                     "cells": cells, "accuracy_mean": statistics.mean(values) if values else None,
                     "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "teacher_accuracy": teacher_values.pop() if len(teacher_values) == 1 else None,
                     "wall_time_s": statistics.mean(cell["wall_time_s"] for cell in ok) if ok else None})
    means = [row["accuracy_mean"] for row in rows]
    differences = {name: means[index] - means[0] if None not in (means[0], means[index]) else None
                   for index, name in ((1, "bf16_teacher_minus_fp32"), (2, "bf16_student_minus_fp32"))}
    wall = [row["wall_time_s"] for row in rows]
    difference = differences["bf16_teacher_minus_fp32"]
    gap = cache_logit_gap(*(cache / f"teacher_cache_{dtype}" for dtype in DTYPES)) if difference is not None else {}
    commit, dirty = git_state()
    command = ["python benchmarks/teacher_dtype_sst2.py", *(sys.argv[1:] if argv is None else argv)]
    meta = {"command": " ".join(command),
            "git_commit": commit, "git_dirty": dirty, "seeds": seeds, "noise_points": NOISE_POINTS,
            **differences,
            **{f"{name}_within_noise": value is not None and abs(value) <= NOISE_POINTS
               for name, value in differences.items()},
            "fast_path_wall_ratio": wall[2] / wall[0] if None not in (wall[0], wall[2]) else None,
            "cache": gap, "wall_time_min": (time.perf_counter() - start) / 60}
    payload = {"meta": meta, "rows": rows}
    write_results(args.results_dir, "teacher_dtype_sst2", payload, markdown(rows, meta))
    return payload


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        *results_header("KD from a bf16 teacher vs an fp32 teacher (SST-2, 4,000 labelled rows)", meta), "",
        "Teacher: transfer_sst2.py's (all-MiniLM-L6-v2 fine-tuned on the first 4,000 SST-2 rows), held in the "
        "`--teacher_dtype` below for its dev pass and the teacher cache. Students: its first 3 layers (fp32 weights), "
        "KD α = 1, T = 2, 3 epochs, lr 1e-4, batch 32, through the teacher cache (transfer_sst2.py's `kd` cell), "
        "trained in fp32 or under `--bf16` (Trainer's bf16 autocast; the losses stay in fp32). SST-2 dev (872 rows), "
        f"mean ± std over seeds {meta['seeds']}. Wall: the whole cell (cache build in the first seed included), mean "
        "per seed.", "",
        "| `--teacher_dtype` | student | teacher dev accuracy | student dev accuracy | seeds | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = format_value(row["accuracy_mean"], ".2f")
        if row["seeds_ok"] > 1:
            accuracy += f" ± {row['accuracy_std']:.2f}"
        student = "`--bf16`" if row["bf16_student"] else "fp32"
        lines.append(f"| {row['teacher_dtype']} | {student} | {format_value(row['teacher_accuracy'], '.2f')} | "
                     f"{accuracy} | {row['seeds_ok']} | {format_value(row['wall_time_s'], '.0f')} |")
    lines.append("")
    for name, what in (("bf16_teacher_minus_fp32", "bf16 teacher − fp32"),
                       ("bf16_student_minus_fp32", "bf16 teacher and `--bf16` student − fp32")):
        if meta[name] is not None:
            verdict = "within" if meta[f"{name}_within_noise"] else "outside"
            lines.append(f"- {what}: {meta[name]:+.2f} points, {verdict} the ±{meta['noise_points']} noise band.")
    if meta["fast_path_wall_ratio"] is not None:
        lines.append(f"- Wall time of the bf16 teacher + `--bf16` student cell: {meta['fast_path_wall_ratio']:.2f}× "
                     "the fp32 cell's.")
    if meta["cache"]:
        lines.append(f"- Cached teacher logits, bf16 vs fp32: max |Δ| {meta['cache']['max_abs_logit_diff']:.3f}, "
                     f"argmax agreement {100 * meta['cache']['argmax_agreement']:.2f}% of the training rows.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
