"""Augment a task's training set: TinyBERT's MLM/GloVe word replacement or Tang et al.'s mask/POS/n-gram rules.

TinyBERT augmentation of SST-2 with the paper's settings (a BERT MLM and GloVe for multi-piece words):

    python -m hf_distill.augment --task_name sst2 --data_dir ../shared/data/glue/SST-2 \
        --mlm_model_name_or_path google-bert/bert-base-uncased --glove_file glove.6B.300d.txt \
        --n_aug 20 --output_file augmented/sst2_train_aug.jsonl --num_proc 4

Without `--glove_file`, multi-piece words take neighbours from the MLM's own input embeddings (our offline fallback,
not the paper's). Tang et al.'s rules (needs spaCy's en_core_web_sm for the POS replacement):

    python -m hf_distill.augment --method tang --task_name sst2 --data_dir ../shared/data/glue/SST-2 \
        --n_iter 20 --output_file augmented/sst2_train_tang.jsonl

Your own file: `--train_file data.csv --text_columns sentence` (pairs: `--text_columns premise,hypothesis`). Or one
JSON/YAML config file holding the same keys: `python -m hf_distill.augment examples/augment_sst2.yaml`.

The output (.jsonl/.json/.csv/.tsv/.parquet, by extension) has the task's text columns, `label` (as label names),
`idx` (each variant keeps its source's index) and a bool `augmented`; pass it to `run_distill.py --train_file`.
It is written under a temporary name and renamed when complete.
"""

import logging as std_logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers.utils import logging

from hf_distill.cli import parse_arguments
from hf_distill.data import load_task_dataset
from hf_distill.data.augment_tang import TangAugmenter
from hf_distill.data.augment_tinybert import TinyBertAugmenter, WordEmbeddings, load_masked_lm
from hf_distill.data.augmentation import AUGMENTED_COLUMN, Augmenter, augment_dataset
from hf_distill.data.task_spec import SEQUENCE_CLASSIFICATION
from hf_distill.guards import check_tokenizer_vocabulary, load_pretrained
from hf_distill.io import write_dataset_atomic

logger = logging.get_logger(__name__)

OUTPUT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass
class AugmentArguments:
    """What to augment, how, and where to write it."""

    output_file: str = field(metadata={"help": "Where to write: .jsonl, .json (JSON lines), .csv, .tsv or .parquet."})
    overwrite_output_file: bool = field(default=False, metadata={"help": "Replace an existing `output_file`."})
    method: str = field(
        default=TinyBertAugmenter.rules_name,
        metadata={
            "help": f"{TinyBertAugmenter.rules_name} (Jiao et al., Algorithm 1) or {TangAugmenter.rules_name} "
            "(Tang et al.).",
            "choices": [TinyBertAugmenter.rules_name, TangAugmenter.rules_name],
        },
    )
    seed: int = field(default=42, metadata={"help": "Same seed, same output, whatever `num_proc`."})
    num_proc: int = field(default=1, metadata={"help": "Worker processes (each loads its own copy of the MLM)."})

    # Data
    task_name: str | None = field(default=None, metadata={"help": "GLUE task: sst2, mrpc, rte, cola, stsb, ..."})
    data_dir: str | None = field(default=None, metadata={"help": "A local GLUE task folder (train.tsv, dev.tsv)."})
    train_file: str | None = field(default=None, metadata={"help": "A csv/tsv/json(l) training file."})
    text_columns: str | None = field(
        default=None, metadata={"help": "With --train_file: one or two comma-separated text column names."}
    )
    label_column: str | None = field(default=None, metadata={"help": "With --train_file: the label column."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Any `datasets.load_dataset` dataset (default: the named task's Hub dataset)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder for Hub datasets and models."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Augment only the first n examples."})

    # TinyBERT
    mlm_model_name_or_path: str = field(
        default="google-bert/bert-base-uncased",
        metadata={"help": "A masked LM with a trained MLM head, e.g. the teacher's pre-trained BERT."},
    )
    glove_file: str | None = field(
        default=None,
        metadata={"help": "GloVe text file for multi-piece words; unset: the MLM's input embeddings (offline)."},
    )
    max_glove_words: int = field(default=100_000, metadata={"help": "Read the first n GloVe words (reference: 100k)."})
    top_k: int = field(default=15, metadata={"help": "Candidates per word (K)."})
    p_t: float = field(default=0.4, metadata={"help": "Probability of replacing each candidate word."})
    n_aug: int = field(
        default=20, metadata={"help": "Variants drawn per sentence (N_a; reference: 30 MRPC/RTE/CoLA, 10 MNLI/QQP)."}
    )
    mlm_batch_size: int = field(
        default=64, metadata={"help": "Most masked copies per MLM forward (from as many sentences as fit)."}
    )
    sentences_per_batch: int = field(
        default=256, metadata={"help": "Sentences whose masked copies are sorted by length and batched together."}
    )
    device: str | None = field(
        default=None, metadata={"help": "Device of the MLM (cpu, cuda, ...); default: cuda when available."}
    )

    # Tang et al.
    p_mask: float = field(default=0.1, metadata={"help": "Tang: probability of masking a word."})
    p_pos: float = field(default=0.1, metadata={"help": "Tang: probability of a same-POS replacement."})
    p_ng: float = field(default=0.25, metadata={"help": "Tang: probability of keeping only a random n-gram."})
    n_iter: int = field(default=20, metadata={"help": "Tang: attempts per text (10 for MNLI/QQP)."})

    def __post_init__(self):
        suffix = Path(self.output_file).suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise ValueError(
                f"`output_file` is {self.output_file!r}; its extension must be one of {', '.join(OUTPUT_SUFFIXES)} "
                "(it picks the format). Rename it, e.g. train_aug.jsonl."
            )
        if self.num_proc < 1:
            raise ValueError(f"`num_proc` is {self.num_proc}; use 1 (no worker processes) or more.")
        if self.sentences_per_batch < 1:
            raise ValueError(
                f"`sentences_per_batch` is {self.sentences_per_batch}; use 1 (one sentence at a time) or more, "
                "e.g. 256."
            )


def build_augmenter(args: AugmentArguments, train: datasets.Dataset, text_columns: tuple[str, ...]) -> Augmenter:
    """The augmenter `args.method` names, its MLM on `args.device` for TinyBERT."""
    if args.method == TangAugmenter.rules_name:
        texts = [text for column in text_columns for text in train[column]]
        return TangAugmenter(texts, p_mask=args.p_mask, p_pos=args.p_pos, p_ng=args.p_ng, n_iter=args.n_iter)
    model, tokenizer = load_pretrained(
        load_masked_lm, args.mlm_model_name_or_path, "mlm_model_name_or_path", cache_dir=args.cache_dir
    )
    check_tokenizer_vocabulary(tokenizer, args.mlm_model_name_or_path, "mlm_model_name_or_path")
    device = args.device or ("cuda" if torch.cuda.is_available() and args.num_proc == 1 else "cpu")
    if args.num_proc > 1 and device != "cpu":
        raise ValueError(
            f"`device` is {device!r} with `num_proc` {args.num_proc}: forked workers cannot share a GPU context. "
            "Use `--num_proc 1` on a GPU (it batches every sentence's words already), or `--device cpu`."
        )
    word_embeddings = (
        WordEmbeddings.from_glove(args.glove_file, max_words=args.max_glove_words) if args.glove_file else None
    )
    if word_embeddings is None:
        logger.info("No `glove_file`: multi-piece words take neighbours from the MLM's input embeddings.")
    return TinyBertAugmenter(
        model.to(device),
        tokenizer,
        word_embeddings=word_embeddings,
        top_k=args.top_k,
        p_t=args.p_t,
        n_aug=args.n_aug,
        batch_size=args.mlm_batch_size,
    )


def labels_as_names(dataset: datasets.Dataset) -> datasets.Dataset:
    """Write labels by name, which `load_task_dataset` maps back to the same ids for GLUE and custom tasks alike;
    integer names stay numbers so that a custom task's labels (2, 10) sort as they did in the source file."""
    feature = dataset.features["label"]
    if not isinstance(feature, datasets.ClassLabel):
        return dataset
    names = [int(name) if name.lstrip("-").isdigit() else name for name in feature.names]
    label_type = "int64" if all(isinstance(name, int) for name in names) else "string"
    features = datasets.Features({**dataset.features, "label": datasets.Value(label_type)})
    return dataset.map(
        lambda batch: {"label": [names[label] for label in batch["label"]]},
        batched=True,
        features=features,
        desc="Writing label names",
    )


def main(argv: list[str] | None = None) -> datasets.Dataset:
    """Parse flags (or one JSON/YAML file), augment the training split, write `output_file`; returns what it wrote."""
    (args,) = parse_arguments((AugmentArguments,), argv)
    std_logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=std_logging.INFO)
    if Path(args.output_file).exists() and not args.overwrite_output_file:
        raise ValueError(
            f"`output_file` {args.output_file!r} already exists. Choose another path, or pass "
            "`--overwrite_output_file` to replace it."
        )
    logger.info(f"Augmentation settings: {vars(args)}")
    text_columns = tuple(name.strip() for name in args.text_columns.split(",")) if args.text_columns else None
    raw, task = load_task_dataset(
        args.task_name,
        data_dir=args.data_dir,
        train_file=args.train_file,
        # Every training row must be augmented: naming the file as its own validation split stops the loader from
        # holding 10% of it out (the validation split is not used here).
        validation_file=args.train_file,
        text_columns=text_columns,
        label_column=args.label_column,
        dataset_name=args.dataset_name,
        cache_dir=args.cache_dir,
        max_train_samples=args.max_train_samples,
        seed=args.seed,
    )
    if task.task_type != SEQUENCE_CLASSIFICATION:
        raise ValueError(
            f"Task {task.name!r} is {task.task_type}, but augmentation rewrites sentences of sequence-classification "
            "tasks (one label per row, which a new sentence keeps). Augment a sequence-classification dataset."
        )
    train = raw["train"]
    augmenter = build_augmenter(args, train, task.text_columns)
    augmented = augment_dataset(
        train,
        task.text_columns,
        augmenter,
        seed=args.seed,
        num_proc=args.num_proc,
        batch_size=args.sentences_per_batch,
        desc=f"Augmenting {task.name} ({args.method})",
    )
    write_dataset_atomic(labels_as_names(augmented), args.output_file)
    new_rows = sum(augmented[AUGMENTED_COLUMN])
    logger.info(
        f"Wrote {len(augmented)} rows to {args.output_file}: {len(train)} originals + {new_rows} new rows "
        f"({new_rows / len(train):.1f} per example, columns {augmented.column_names})."
    )
    return augmented


if __name__ == "__main__":
    main()
