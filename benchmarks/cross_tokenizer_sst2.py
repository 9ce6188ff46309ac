#!/usr/bin/env python
"""A student with its own tokenizer: KD from the MiniLM teacher against the same student fine-tuned alone, SST-2.

The teacher is transfer_sst2.py's (all-MiniLM-L6-v2, uncased WordPiece of 30,522 pieces, fine-tuned on the first 4,000
SST-2 training rows; `<transfer_cache_dir>/teacher`, reused when it is there, else trained there). The student has
another vocabulary: a WordPiece tokenizer of `--vocab_size` pieces trained with the `tokenizers` library on the SST-2
training sentences the runs read (the 4,000 labelled and the `--transfer_rows` transfer rows), and a small BERT
(`--student_config`) initialised randomly once, saved with that tokenizer and shared by every cell. For each seed:
- `finetune`: the student fine-tuned on the 4,000 labelled rows alone (CE);
- `kd`: KD (α = 1, T = 2) on the same rows, each model reading the text through its own tokenizer;
- `kd_transfer`: KD (α = 1, T = 2) on the 4,000 rows plus the transfer rows (labels never read).
All students train at lr `--learning_rate` (a random-init model: higher than the 1e-4 of the truncated students), batch
32, 25 warm-up steps; 3 epochs on the 4,000 rows, 2 with the transfer rows, as transfer_sst2.py. Writes
`benchmarks/results/cross_tokenizer_sst2{.json,.md}`:

    python benchmarks/cross_tokenizer_sst2.py

Cells run in subprocesses and are cached under `--cache_dir` like the other benchmarks' (a rerun resumes).
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

from glue_accuracy import format_value, git_state, measure_latencies, results_header, run_cell, write_results  # noqa: E402
from transfer_sst2 import LABELLED_ROWS, common, shared_teacher, write_transfer_file  # noqa: E402

logger = logging.getLogger("cross_tokenizer_sst2")
STUDENT_CONFIG = {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024}
METHODS = {
    "finetune": "own-tokenizer student, fine-tuned on the 4,000 labelled rows",
    "kd": "own-tokenizer student, KD on the 4,000 labelled rows",
    "kd_transfer": "own-tokenizer student, KD on 4,000 labelled + transfer rows",
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--transfer_rows", type=int, default=16000)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--student_config", type=json.loads, default=STUDENT_CONFIG,
                        help="BertConfig fields of the random-init student (JSON).")
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "cross_tokenizer_sst2"))
    parser.add_argument("--transfer_cache_dir", default=str(REPO / "benchmarks" / "cache" / "transfer_sst2"),
                        help="transfer_sst2.py's --cache_dir: its teacher is shared.")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    return parser.parse_args(argv)


def labelled_sentences(glue_dir: Path) -> list[str]:
    """The text of the first `LABELLED_ROWS` SST-2 training rows (the labelled rows of every cell)."""
    with open(glue_dir / "SST-2" / "train.tsv", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [row[0] for _, row in zip(range(LABELLED_ROWS), reader)]


def build_student_init(teacher_dir: Path, texts: list[str], vocab_size: int, config_fields: dict, folder: Path):
    """A WordPiece tokenizer trained on `texts` and a randomly initialised BERT classifier over it, with the teacher's
    label map, saved in `folder` (kept while its settings are unchanged)."""
    settings = {"vocab_size": vocab_size, "config": config_fields, "texts": len(texts)}
    record = folder / "student_init.json"
    if record.exists() and json.loads(record.read_text()) == settings:
        return
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import AutoConfig, BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator(texts, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    teacher_config = AutoConfig.from_pretrained(teacher_dir)
    config = BertConfig(vocab_size=len(fast), pad_token_id=fast.pad_token_id, max_position_embeddings=128,
                        num_labels=teacher_config.num_labels, id2label=teacher_config.id2label,
                        label2id=teacher_config.label2id, **config_fields)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    record.write_text(json.dumps(settings))


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    start = time.perf_counter()
    cache = Path(args.cache_dir)
    teacher_dir = Path(args.transfer_cache_dir) / "teacher"
    data, teacher = shared_teacher(args.glue_dir, teacher_dir)
    transfer_file = cache / f"transfer_{args.transfer_rows}.jsonl"
    transfer_count = write_transfer_file(Path(args.glue_dir), args.transfer_rows, transfer_file)
    texts = labelled_sentences(Path(args.glue_dir)) + [json.loads(line)["sentence"] for line in open(transfer_file)]
    student_init = cache / "student_init"
    build_student_init(teacher_dir, texts, args.vocab_size, args.student_config, student_init)

    seeds = [int(seed) for seed in args.seeds.split(",")]
    kd = ["--method", "kd", "--alpha", "1.0", "--temperature", "2.0", "--teacher_model_name_or_path",
          str(teacher_dir), "--student_model_name_or_path", str(student_init), *data]
    cells: dict[str, list[dict]] = {method: [] for method in METHODS}
    for seed in seeds:
        cells["finetune"].append(run_cell("run_glue_teacher.py", [
            "--model_name_or_path", str(student_init), *data, *common(seed, 3, args.learning_rate)],
            cache / "finetune" / f"seed{seed}"))
        cells["kd"].append(run_cell("run_distill.py", [
            *kd, "--teacher_cache", str(cache / "teacher_cache_kd"), *common(seed, 3, args.learning_rate)],
            cache / "kd" / f"seed{seed}"))
        cells["kd_transfer"].append(run_cell("run_distill.py", [
            *kd, "--transfer_file", str(transfer_file), "--teacher_cache", str(cache / "teacher_cache_transfer"),
            *common(seed, 2, args.learning_rate)], cache / "kd_transfer" / f"seed{seed}"))

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
            model_dirs[method] = cache / method / f"seed{seeds[0]}"
    latency = measure_latencies(model_dirs, "sst2", cache / "latency.json")
    for row in rows:
        if row["method"] in latency:
            row.update(latency[row["method"]])
            row["speedup"] = latency["teacher"]["latency_ms"] / row["latency_ms"]
        if row.get("accuracy_mean") is not None:
            row["pct_of_teacher"] = 100 * row["accuracy_mean"] / teacher_accuracy
    by_method = {row["method"]: row for row in rows}

    def gain(method: str) -> float | None:
        values = by_method[method]["accuracy_mean"], by_method["finetune"]["accuracy_mean"]
        return None if None in values else values[0] - values[1]

    commit, dirty = git_state()
    meta = {"command": " ".join(["python benchmarks/cross_tokenizer_sst2.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "git_commit": commit, "git_dirty": dirty, "labelled_rows": LABELLED_ROWS, "transfer_rows": transfer_count,
            "seeds": seeds, "vocab_size": args.vocab_size, "student_config": args.student_config,
            "learning_rate": args.learning_rate, "wall_time_min": (time.perf_counter() - start) / 60,
            "kd_gain_over_finetune": gain("kd"), "kd_transfer_gain_over_finetune": gain("kd_transfer")}
    payload = {"meta": meta, "rows": rows, "cells": cells}
    write_results(args.results_dir, "cross_tokenizer_sst2", payload, markdown(rows, meta))
    return payload


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        *results_header("SST-2 with few labels: a student with its own tokenizer", meta), "",
        "Teacher: all-MiniLM-L6-v2 (uncased WordPiece, 30,522 pieces) fine-tuned on the first "
        f"{meta['labelled_rows']} SST-2 training rows (2 epochs, lr 5e-5). Student: its own WordPiece tokenizer of "
        f"{meta['vocab_size']} pieces trained on the SST-2 sentences below, and a random-init BERT "
        f"{json.dumps(meta['student_config'])}, "
        f"the same initial weights for every cell; lr {meta['learning_rate']:g}, batch 32, 25 warm-up steps; "
        f"3 epochs on the {meta['labelled_rows']} labelled rows, 2 with the {meta['transfer_rows']} transfer rows "
        "(the next training sentences, labels never read); KD α = 1, T = 2 through the teacher cache, each model "
        f"reading its own tokenization. SST-2 dev (872 rows), mean ± std over seeds {meta['seeds']}. Latency: batch "
        "32×64, fastest of 10 interleaved forwards, CPU.", "",
        "| model | dev accuracy | seeds | % of teacher | params (M) | latency (ms) | speed-up | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = format_value(row.get("accuracy_mean"), ".2f")
        if row["seeds_ok"] > 1:
            accuracy += f" ± {row['accuracy_std']:.2f}"
        lines.append(f"| {row['name']} | {accuracy} | {row['seeds_ok']} | "
                     f"{format_value(row.get('pct_of_teacher'), '.1f')} | "
                     f"{format_value(row.get('parameters_m'), '.1f')} | "
                     f"{format_value(row.get('latency_ms'), '.0f')} | {format_value(row.get('speedup'), '.2f')}× | "
                     f"{format_value(row.get('wall_time_s'), '.0f')} |")
    lines += ["", f"Over the student fine-tuned alone: KD {format_value(meta['kd_gain_over_finetune'], '+.2f')}, "
              f"KD + transfer {format_value(meta['kd_transfer_gain_over_finetune'], '+.2f')} dev accuracy points."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
