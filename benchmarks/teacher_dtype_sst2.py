#!/usr/bin/env python
"""KD from a bf16 teacher against KD from the same teacher in fp32: student accuracy, on real SST-2.

transfer_sst2.py's teacher (all-MiniLM-L6-v2 fine-tuned on the first 4,000 SST-2 rows; `<transfer_cache_dir>/teacher`,
reused when there, else trained there) distils into its first 3 layers exactly as that benchmark's `kd` cell (α = 1,
T = 2, 3 epochs, lr 1e-4, through the teacher cache), once per `--teacher_dtype` (float32, bfloat16) and seed. The
student starts from the teacher's fp32 weights either way; only the teacher's outputs (cache and dev metric) change.
Also reported: the teacher's dev accuracy in each dtype and how far the two caches' logits are apart. Writes
`benchmarks/results/teacher_dtype_sst2{.json,.md}`:

    python benchmarks/teacher_dtype_sst2.py

On a CPU without bf16 matrix units (AVX2) the bf16 teacher is emulated and slower, which does not change what it
computes: the accuracy comparison holds on any machine; speed is `speed.py`'s business.
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
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    start = time.perf_counter()
    teacher_dir = Path(args.transfer_cache_dir) / "teacher"
    data, _ = shared_teacher(args.glue_dir, teacher_dir)
    cache = Path(args.cache_dir)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    for dtype in DTYPES:
        cells = [kd_cell([teacher_dir], [*data, "--teacher_dtype", dtype], cache / f"teacher_cache_{dtype}", seed,
                         cache / dtype / f"seed{seed}") for seed in seeds]
        ok = [cell for cell in cells if cell["status"] == "ok"]
        values = [100 * cell["results"]["eval_accuracy"] for cell in ok]
        teacher_values = {100 * cell["results"]["teacher_eval_accuracy"] for cell in ok}
        rows.append({"teacher_dtype": dtype, "accuracy": values, "seeds_ok": len(ok), "cells": cells,
                     "accuracy_mean": statistics.mean(values) if values else None,
                     "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "teacher_accuracy": teacher_values.pop() if len(teacher_values) == 1 else None,
                     "wall_time_s": statistics.mean(cell["wall_time_s"] for cell in ok) if ok else None})
    means = [row["accuracy_mean"] for row in rows]
    difference = means[1] - means[0] if None not in means else None
    gap = cache_logit_gap(*(cache / f"teacher_cache_{dtype}" for dtype in DTYPES)) if difference is not None else {}
    commit, dirty = git_state()
    command = ["python benchmarks/teacher_dtype_sst2.py", *(sys.argv[1:] if argv is None else argv)]
    meta = {"command": " ".join(command),
            "git_commit": commit, "git_dirty": dirty, "seeds": seeds, "noise_points": NOISE_POINTS,
            "bf16_minus_fp32": difference, "within_noise": difference is not None and abs(difference) <= NOISE_POINTS,
            "cache": gap, "wall_time_min": (time.perf_counter() - start) / 60}
    payload = {"meta": meta, "rows": rows}
    write_results(args.results_dir, "teacher_dtype_sst2", payload, markdown(rows, meta))
    return payload


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        *results_header("KD from a bf16 teacher vs an fp32 teacher (SST-2, 4,000 labelled rows)", meta), "",
        "Teacher: transfer_sst2.py's (all-MiniLM-L6-v2 fine-tuned on the first 4,000 SST-2 rows), held in the "
        "`--teacher_dtype` below for its dev pass and the teacher cache. Students: its first 3 layers (fp32 weights), "
        "KD α = 1, T = 2, 3 epochs, lr 1e-4, batch 32, through the teacher cache (transfer_sst2.py's `kd` cell). "
        f"SST-2 dev (872 rows), mean ± std over seeds {meta['seeds']}.", "",
        "| `--teacher_dtype` | teacher dev accuracy | student dev accuracy | seeds | wall (s) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = format_value(row["accuracy_mean"], ".2f")
        if row["seeds_ok"] > 1:
            accuracy += f" ± {row['accuracy_std']:.2f}"
        lines.append(f"| {row['teacher_dtype']} | {format_value(row['teacher_accuracy'], '.2f')} | {accuracy} | "
                     f"{row['seeds_ok']} | {format_value(row['wall_time_s'], '.0f')} |")
    if meta["bf16_minus_fp32"] is not None:
        verdict = "within" if meta["within_noise"] else "outside"
        lines += ["", f"bf16 − fp32 student: {meta['bf16_minus_fp32']:+.2f} points, {verdict} the ±"
                  f"{meta['noise_points']} noise band. Cached teacher logits: max |Δ| "
                  f"{meta['cache']['max_abs_logit_diff']:.3f}, argmax agreement "
                  f"{100 * meta['cache']['argmax_agreement']:.2f}% of the training rows."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
