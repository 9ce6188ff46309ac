#!/usr/bin/env python
"""A teacher ensemble against its best member, on real SST-2 with few labels.

Three teachers: all-MiniLM-L6-v2 fine-tuned on the first 4,000 SST-2 training rows with seeds 42, 43 and 44, each
exactly transfer_sst2.py's teacher (2 epochs, lr 5e-5); the seed-42 one is that benchmark's teacher cell
(`<transfer_cache_dir>/teacher`: reused when it is there, else trained there, for both benchmarks). A 3-layer
student is then distilled, for each student seed, as transfer_sst2.py's `kd` cell (KD α = 1, T = 2, on the 4,000
rows, 3 epochs, lr 1e-4, through a teacher cache):
- `kd_best`: from the best single teacher (highest dev accuracy; when that is seed 42, these are transfer_sst2.py's
  own `kd` cells, shared);
- `kd_ensemble`: from the ensemble of the three (`--teacher_model_name_or_path`, the best teacher first, so both
  students start from the same teacher's first 3 layers and differ by their target alone: the teachers'
  probabilities at T averaged).
The ensemble's own dev accuracy (the argmax of its averaged probabilities) is the `teacher_eval_accuracy` that
run_distill.py records for the `kd_ensemble` cells. Writes `benchmarks/results/ensemble_sst2{.json,.md}`:

    python benchmarks/ensemble_sst2.py
    python benchmarks/ensemble_sst2.py --student_seeds 42      # one student per row (quicker)

Cells run in subprocesses and are cached like transfer_sst2.py's (a rerun resumes).
"""

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from glue_accuracy import format_value, git_state, results_header, summarize, write_results  # noqa: E402
from transfer_sst2 import LABELLED_ROWS, kd_cell, teacher_cell  # noqa: E402

logger = logging.getLogger("ensemble_sst2")
TRANSFER_TEACHER_SEED = 42  # the seed of transfer_sst2.py's teacher
TARGET_GAIN = 0.5  # dev accuracy points of KD from the ensemble over KD from the best single teacher


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher_seeds", default="42,43,44", help="One teacher per seed; all form the ensemble.")
    parser.add_argument("--student_seeds", "--seeds", default="42,43,44", help="Seeds of each student row.")
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "ensemble_sst2"))
    parser.add_argument("--transfer_cache_dir", default=str(REPO / "benchmarks" / "cache" / "transfer_sst2"),
                        help="transfer_sst2.py's --cache_dir: its seed-42 teacher (and its `kd` students, when that "
                        "teacher is the best) are shared. Both benchmarks must read the same --glue_dir.")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    args.teacher_seeds = [int(seed) for seed in args.teacher_seeds.split(",")]
    args.student_seeds = [int(seed) for seed in args.student_seeds.split(",")]
    if len(args.teacher_seeds) < 2:
        raise SystemExit(f"--teacher_seeds is {args.teacher_seeds}: an ensemble needs at least 2 teachers.")
    return args


def teacher_dir(args: argparse.Namespace, seed: int) -> Path:
    if seed == TRANSFER_TEACHER_SEED:
        return Path(args.transfer_cache_dir) / "teacher"
    return Path(args.cache_dir) / f"teacher_seed{seed}"


def single_teacher_folders(args: argparse.Namespace, seed: int) -> tuple[Path, Path]:
    """The teacher cache and the cell folder of the students of the teacher of `seed` (transfer_sst2.py's `kd`
    folders for its teacher)."""
    if seed == TRANSFER_TEACHER_SEED:
        return Path(args.transfer_cache_dir) / "teacher_cache_kd", Path(args.transfer_cache_dir) / "kd"
    return Path(args.cache_dir) / f"teacher_cache_teacher{seed}", Path(args.cache_dir) / f"kd_teacher{seed}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    start = time.perf_counter()
    cache = Path(args.cache_dir)
    data = ["--data_dir", str(Path(args.glue_dir) / "SST-2")]
    teachers = {seed: teacher_cell(data, seed, teacher_dir(args, seed)) for seed in args.teacher_seeds}
    failed = {seed: cell.get("log") for seed, cell in teachers.items() if cell["status"] != "ok"}
    if failed:
        raise SystemExit(f"teachers failed (seed: log): {failed}")
    best = max(args.teacher_seeds, key=lambda seed: teachers[seed]["results"]["eval_accuracy"])  # first on ties
    ensemble = [teacher_dir(args, best)] + [teacher_dir(args, seed) for seed in args.teacher_seeds if seed != best]
    best_cache, best_folder = single_teacher_folders(args, best)
    cells = {"kd_best": [], "kd_ensemble": []}
    for seed in args.student_seeds:
        cells["kd_best"].append(kd_cell(ensemble[:1], data, best_cache, seed, best_folder / f"seed{seed}"))
        cells["kd_ensemble"].append(kd_cell(ensemble, data, cache / "teacher_cache_ensemble", seed,
                                            cache / "kd_ensemble" / f"seed{seed}"))

    rows = []
    for seed, cell in teachers.items():
        rows.append({**summarize("sst2", f"teacher_seed{seed}", [cell]), "model_dir": str(teacher_dir(args, seed)),
                     "name": f"teacher, seed {seed}" + (" (best)" if seed == best else "")})
    ensemble_cell = next((cell for cell in cells["kd_ensemble"] if cell["status"] == "ok"), None)
    ensemble_row = {"task": "sst2", "method": "ensemble", "seeds_ok": 0,
                    "name": f"teacher ensemble ({len(ensemble)} teachers, probabilities averaged at T = 2)"}
    if ensemble_cell is not None:
        results = ensemble_cell["results"]
        ensemble_row.update(seeds_ok=1, accuracy_mean=100 * results["teacher_eval_accuracy"], accuracy_std=0.0,
                            member_accuracy=[100 * results[f"teacher{k}_eval_accuracy"] for k in range(len(ensemble))])
    rows.append(ensemble_row)
    names = {"kd_best": f"3-layer, KD from the best teacher (seed {best})",
             "kd_ensemble": f"3-layer, KD from the ensemble of {len(ensemble)}"}
    for method, method_cells in cells.items():
        rows.append({**summarize("sst2", method, method_cells), "name": names[method]})
    by_method = {row["method"]: row for row in rows}

    def gain(row: str, over: str) -> float | None:
        values = by_method[row].get("accuracy_mean"), by_method[over].get("accuracy_mean")
        return None if None in values else values[0] - values[1]

    commit, dirty = git_state()
    meta = {"command": " ".join(["python benchmarks/ensemble_sst2.py", *(sys.argv[1:] if argv is None else argv)]),
            "git_commit": commit, "git_dirty": dirty, "labelled_rows": LABELLED_ROWS,
            "dev_rows": teachers[best]["results"].get("eval_samples"),
            "teacher_seeds": args.teacher_seeds, "student_seeds": args.student_seeds, "best_teacher_seed": best,
            "ensemble": [str(path) for path in ensemble], "wall_time_min": (time.perf_counter() - start) / 60,
            "ensemble_gain_over_best_teacher": gain("ensemble", f"teacher_seed{best}"),
            "kd_ensemble_gain_over_kd_best": gain("kd_ensemble", "kd_best"), "target_gain": TARGET_GAIN}
    payload = {"meta": meta, "rows": rows, "cells": {"teachers": teachers, **cells}}
    write_results(args.results_dir, "ensemble_sst2", payload, markdown(rows, meta))
    return payload


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        *results_header("SST-2 with few labels: KD from a teacher ensemble", meta), "",
        f"{meta['labelled_rows']} labelled SST-2 training rows (the first), SST-2 dev ({meta['dev_rows']} rows); "
        f"students: mean ± std over seeds {meta['student_seeds']}. Teachers: all-MiniLM-L6-v2 fine-tuned on the "
        f"labelled rows (2 epochs, lr 5e-5) with seeds {meta['teacher_seeds']} (seed 42: transfer_sst2.py's "
        f"teacher). Students: the first 3 layers of the best teacher (seed {meta['best_teacher_seed']}); KD α = 1, "
        "T = 2, 3 epochs, lr 1e-4, batch 32, 25 warm-up steps, through the teacher cache (transfer_sst2.py's `kd` "
        "cell). The ensemble's target is its teachers' probabilities at T averaged; its dev accuracy is the argmax "
        "of that average.", "",
        "| model | dev accuracy | seeds | wall (s) |", "|---|---|---|---|",
    ]
    for row in rows:
        accuracy = format_value(row.get("accuracy_mean"), ".2f")
        if row.get("seeds_ok", 0) > 1:
            accuracy += f" ± {row['accuracy_std']:.2f}"
        lines.append(f"| {row['name']} | {accuracy} | {row.get('seeds_ok', 0)} | "
                     f"{format_value(row.get('wall_time_s'), '.0f')} |")
    kd_gain, teacher_gain = meta["kd_ensemble_gain_over_kd_best"], meta["ensemble_gain_over_best_teacher"]
    status = "not measured" if kd_gain is None else "met" if kd_gain >= meta["target_gain"] else "not met"
    lines += ["", f"Ensemble over its best teacher: {format_value(teacher_gain, '+.2f')} dev accuracy points.  ",
              "KD from the ensemble over KD from the best single teacher: "
              f"{format_value(kd_gain, '+.2f')} dev accuracy points (target ≥ +{meta['target_gain']}): **{status}**."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
