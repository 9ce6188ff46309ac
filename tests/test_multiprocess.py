"""Multi-process runs: both scripts under `torchrun --nproc_per_node 2` (gloo on CPU) give the metrics of one process
with the same global batch, every launch succeeds, only the main process writes the results and prints the closing
table, the teacher stays a plain per-rank model outside DDP, and a student with its own tokenizer trains on both
tokenizations of the same rows on every process."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, SST2_ROWS, make_tiny_bert, make_tiny_bert_config, make_tiny_tokenizer
from transformers import Trainer, TrainingArguments

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402
from hf_distill import DistillationConfig, DistillationTrainer, guards  # noqa: E402
from hf_distill.cli import has_distributed_accelerator  # noqa: E402

# 16 distinct rows: each process of a 2-process run sees different examples, so any sharding or loss-scaling error
# shows in the metrics.
ROWS = [
    (f"{subject} is very {word}", label)
    for label, words in ((1, ["good", "great", "fun", "brilliant"]), (0, ["bad", "awful", "boring", "dull"]))
    for word in words
    for subject in ("the movie", "the plot")
]
# Plain SGD without clipping: the update is proportional to the gradient, so a gradient scaled by the number of
# processes would change the results (Adam and clipping would hide it).
TRAINING = ["--optim", "sgd", "--learning_rate", "0.1", "--max_grad_norm", "0", "--max_steps", "3", "--seed", "0",
            "--max_seq_length", "16", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]
USE_CPU = ["--use_cpu", "true"]
LOSS_TOLERANCE = 1e-4
# Launches of the distillation script in a row: each must succeed and give the one-process metrics. (A launch once
# failed in 4 of 7 tries, and a retry here hid it.)
DISTILL_LAUNCHES = 3
CLOSING_TABLE = "Distillation results ("
WORKERS = "tests/distributed_workers.py"
# Shuffled epochs of the cross-tokenizer run: 2 processes take 2 of the 8 rows each per step.
CROSS_EPOCHS = 3
CROSS_STEPS_PER_EPOCH = len(SST2_ROWS) // (2 * 2)
# What a finished run holds besides the model files; `all_results.json` is the union of the `*_results.json`.
TEACHER_RESULTS = {"all_results.json", "train_results.json", "eval_results.json", "trainer_state.json",
                   guards.COMPLETION_MARKER}
DISTILL_RESULTS = TEACHER_RESULTS | {"teacher_results.json", "distillation_config.json", "summary.md", "README.md"}


def torchrun_available() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


pytestmark = pytest.mark.skipif(not torchrun_available(), reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A dropout-free tiny teacher (identical forward passes on every rank) and an SST-2 folder of 16 distinct rows.

    The larger initialisation makes the [CLS] features differ between inputs; at the default 0.02 they are nearly
    constant, balanced labels cancel the gradients and three steps change the metrics by less than the tolerance.
    """
    root = tmp_path_factory.mktemp("multiprocess")
    teacher = make_tiny_bert(seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2)
    teacher.config.id2label, teacher.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    teacher.save_pretrained(root / "teacher")
    make_tiny_tokenizer().save_pretrained(root / "teacher")
    data = root / "SST-2"
    data.mkdir()
    assert len(set(ROWS)) == 16
    body = "sentence\tlabel\n" + "".join(f"{sentence}\t{label}\n" for sentence, label in ROWS)
    for split in ("train.tsv", "dev.tsv"):
        (data / split).write_text(body, encoding="utf-8")
    return root


def run_two_processes(script: str, args: list[str], cwd) -> str:
    """Launch `script` on 2 processes; fail on the first unsuccessful launch (no retry). Returns the launch's stdout,
    where torchrun's workers print."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    # --standalone binds its ports instead of picking free ones: the rendezvous store listens on localhost:0 and the
    # workers connect to the launcher's own TCPStore (bound at port 0 too, shared unless this variable opts out), so
    # no other process can take a port between its choice and its use.
    env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / script), *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"torchrun failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


def assert_finished_once(output_dir, expected: set[str]) -> None:
    """The result files, the marker written last by the main process (world of 2), and no leftovers (staging folder,
    temporary files) from a second writer."""
    names = {path.name for path in output_dir.iterdir()}
    assert expected <= names, expected - names
    assert not {name for name in names if name.startswith(".")}, names
    marker = output_dir / guards.COMPLETION_MARKER
    assert json.loads(marker.read_text())["world_size"] == 2
    assert all(path.stat().st_mtime_ns <= marker.stat().st_mtime_ns for path in output_dir.iterdir())
    saved = json.loads((output_dir / "all_results.json").read_text())
    for split in ("train", "eval"):
        assert json.loads((output_dir / f"{split}_results.json").read_text()).items() <= saved.items()


def assert_same_metrics(one: dict, two: dict, keys: list[str]) -> None:
    for key in keys:
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key


def test_teacher_fine_tuning_on_two_processes_matches_one(workdir):
    common = ["--model_name_or_path", str(workdir / "teacher"), "--task_name", "sst2", "--data_dir",
              str(workdir / "SST-2"), *TRAINING, *USE_CPU]
    one = run_glue_teacher.main([*common, "--per_device_train_batch_size", "16", "--per_device_eval_batch_size",
                                 "16", "--output_dir", str(workdir / "teacher-1proc")])
    stdout = run_two_processes("run_glue_teacher.py", [*common, "--per_device_train_batch_size", "8",
                                                       "--per_device_eval_batch_size", "8", "--output_dir",
                                                       str(workdir / "teacher-2proc")], workdir)
    assert stdout.count("***** eval metrics *****") == 1
    assert_finished_once(workdir / "teacher-2proc", TEACHER_RESULTS)
    two = json.loads((workdir / "teacher-2proc" / "all_results.json").read_text())
    assert_same_metrics(one, two, ["eval_loss", "eval_accuracy"])
    assert two["train_samples"] == two["eval_samples"] == 16
    untrained = run_glue_teacher.main([*common, "--learning_rate", "0", "--output_dir", str(workdir / "teacher-0")])
    assert abs(one["eval_loss"] - untrained["eval_loss"]) > 100 * LOSS_TOLERANCE  # training moved the metric


def test_distillation_on_two_processes_matches_one_at_every_launch(workdir):
    # A float32 teacher in the launched processes too, which the tests' probe patch (conftest) does not reach.
    common = ["--method", "kd", "--alpha", "0.5", "--temperature", "2", "--teacher_model_name_or_path",
              str(workdir / "teacher"), "--task_name", "sst2", "--data_dir", str(workdir / "SST-2"),
              "--student_layers", "2", "--teacher_dtype", "float32", *TRAINING]
    one = run_distill.main([*common, *USE_CPU, "--per_device_train_batch_size", "16", "--per_device_eval_batch_size",
                            "16", "--output_dir", str(workdir / "student-1proc")])
    for launch in range(DISTILL_LAUNCHES):
        # The first launch is the reported command: on a machine without GPUs it has no --use_cpu, which the
        # scripts then default to (else every process ran the whole job alone, racing on output_dir).
        device = [] if launch == 0 and not has_distributed_accelerator() else USE_CPU
        output_dir = workdir / f"student-2proc-{launch}"
        stdout = run_two_processes("run_distill.py", [*common, *device, "--per_device_train_batch_size", "8",
                                                      "--per_device_eval_batch_size", "8", "--output_dir",
                                                      str(output_dir)], workdir)
        assert stdout.count(CLOSING_TABLE) == 1, f"launch {launch}: the closing table printed more than once"
        assert_finished_once(output_dir, DISTILL_RESULTS)
        two = json.loads((output_dir / "all_results.json").read_text())
        assert_same_metrics(one, two, ["eval_loss", "eval_loss_kd", "eval_loss_ce", "eval_accuracy",
                                       "teacher_eval_loss", "teacher_eval_accuracy"])
        assert two["train_samples"] == one["train_samples"] == 16
        assert json.loads((output_dir / "distillation_config.json").read_text())["method"] == "kd"
        assert "| student (kd) |" in (output_dir / "summary.md").read_text()
    assert one["eval_loss"] != pytest.approx(one["teacher_eval_loss"], abs=100 * LOSS_TOLERANCE)


def test_both_tokenizations_of_every_row_stay_together_on_two_processes(tiny_sst2_dir, tmp_path):
    """kd into a student with its own tokenizer on 2 processes over shuffled epochs, with the teacher and with its
    cache: in every batch the loss got, each row's teacher side, student side and sentence (by `idx`) are one text,
    and the cached logits are the teacher's (checked in the worker, tests/distributed_workers.py); each epoch the
    processes share the rows out between them, each row once."""
    run_two_processes(WORKERS, ["cross_tokenizer", str(tiny_sst2_dir), str(tmp_path), str(CROSS_EPOCHS)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for run, cached_batches in (("teacher", 0), ("teacher cache", CROSS_EPOCHS * CROSS_STEPS_PER_EPOCH)):
        for report in (ranks[0][run], ranks[1][run]):
            assert report["world_size"] == 2, run
            assert report["mismatches"] == [], run
            assert [len(rows) for rows in report["epochs"]] == [2 * CROSS_STEPS_PER_EPOCH] * CROSS_EPOCHS, run
            assert report["cached_batches"] == cached_batches, run
        for first, second in zip(ranks[0][run]["epochs"], ranks[1][run]["epochs"], strict=True):
            assert sorted(first + second) == list(range(len(SST2_ROWS))), run
        assert len({tuple(rows) for rows in ranks[0][run]["epochs"]}) == CROSS_EPOCHS, run  # each in another order


def test_token_distillation_on_two_processes_trains_the_student_one_process_trains(workdir, tmp_path):
    """Per-token KD on a tagging task: sentences of different lengths give the two processes different numbers of
    labelled tokens, so a loss divided by each process's own count (not the global one) would train another student.
    The weights after 3 SGD steps are compared (evaluation losses are per-batch token means, which depend on how the
    dev rows are batched)."""
    from safetensors.torch import load_file
    from transformers import BertForTokenClassification

    from hf_distill.data.conll import CONLL2003_TASK

    tags = {"movie": "B-MISC", "plot": "B-ORG", "great": "B-PER", "bad": "B-LOC"}
    data = tmp_path / "conll2003"
    data.mkdir()
    sentences = [f"{sentence}{' fun' * (index % 4)}".split() for index, (sentence, _) in enumerate(ROWS)]
    body = "".join("".join(f"{word} {tags.get(word, 'O')} \n" for word in words) + "\n" for words in sentences)
    for split in ("train.txt", "valid.txt"):
        (data / split).write_text(body, encoding="utf-8")
    names = CONLL2003_TASK.label_names
    torch.manual_seed(0)
    teacher = BertForTokenClassification(make_tiny_bert_config(
        num_labels=len(names), id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2))
    teacher.save_pretrained(tmp_path / "teacher")
    make_tiny_tokenizer().save_pretrained(tmp_path / "teacher")
    common = ["--method", "kd", "--alpha", "0.5", "--temperature", "2", "--teacher_model_name_or_path",
              str(tmp_path / "teacher"), "--task_name", "conll2003", "--data_dir", str(data), "--student_layers", "2",
              "--teacher_dtype", "float32", *TRAINING, *USE_CPU]
    one = run_distill.main([*common, "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
                            "--output_dir", str(tmp_path / "one")])
    run_two_processes("run_distill.py", [*common, "--per_device_train_batch_size", "8", "--per_device_eval_batch_size",
                                         "8", "--output_dir", str(tmp_path / "two")], tmp_path)
    assert_finished_once(tmp_path / "two", DISTILL_RESULTS)
    two = json.loads((tmp_path / "two" / "all_results.json").read_text())
    assert two["eval_f1"] == one["eval_f1"] and two["eval_accuracy"] == one["eval_accuracy"]
    weights = {run: load_file(tmp_path / run / "model.safetensors") for run in ("one", "two")}
    run_distill.main([*common, "--learning_rate", "0", "--output_dir", str(tmp_path / "untrained")])
    initial = load_file(tmp_path / "untrained" / "model.safetensors")
    moved = max((weights["one"][name] - initial[name]).abs().max().item() for name in initial)
    assert moved > 1e-2
    for name, value in weights["one"].items():
        torch.testing.assert_close(weights["two"][name], value, atol=LOSS_TOLERANCE, rtol=0, msg=name)


@pytest.mark.parametrize("script", ["run_distill", "run_glue_teacher"])
def test_a_process_that_does_not_save_writes_and_prints_nothing(script, workdir, tmp_path, monkeypatch, capsys):
    """What a non-main rank does, in one process: it trains and evaluates, but writes no file and prints no table."""
    monkeypatch.setattr(TrainingArguments, "should_save", property(lambda self: False))
    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)
    data = ["--task_name", "sst2", "--data_dir", str(workdir / "SST-2"), *TRAINING, *USE_CPU,
            "--output_dir", str(tmp_path / "out")]
    if script == "run_distill":
        metrics = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(workdir / "teacher"),
                                    "--student_layers", "2", *data])
    else:
        metrics = run_glue_teacher.main(["--model_name_or_path", str(workdir / "teacher"), *data])
    assert "eval_loss" in metrics
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    out = capsys.readouterr().out
    assert CLOSING_TABLE not in out and "***** eval metrics *****" not in out


def test_a_launch_whose_processes_would_each_run_alone_is_refused(tmp_path, monkeypatch):
    """torchrun started 2 processes, but this one sees a world of 1 (no GPU, `use_cpu` false): refused."""
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    guards.check_distributed_launch(args)  # not launched: fine
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"started 2 processes .* sees a world of 1 .* Pass `--use_cpu true`"):
        guards.check_distributed_launch(args)


def test_teacher_is_not_prepared_by_the_accelerator(tmp_path, tiny_teacher, tiny_tokenizer):
    """The teacher is a plain attribute: never wrapped (DDP), never in the optimizer, unchanged by training."""
    from datasets import Dataset

    student = make_tiny_bert(seed=1, num_hidden_layers=2)
    batch = tiny_tokenizer([sentence for sentence, _ in ROWS], padding="max_length", max_length=12)
    train = Dataset.from_dict({**batch, "labels": [label for _, label in ROWS]})
    before = {name: tensor.clone() for name, tensor in tiny_teacher.state_dict().items()}
    args = DistillationConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none",
                              save_strategy="no", use_cpu=True, learning_rate=0.1)
    trainer = DistillationTrainer(model=student, teacher_model=tiny_teacher, args=args, train_dataset=train)
    trainer.train()
    assert trainer.teacher is tiny_teacher
    assert all(model is not trainer.teacher for model in trainer.accelerator._models)
    assert not isinstance(trainer.teacher, torch.nn.parallel.DistributedDataParallel)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in trainer.teacher.parameters()}
    assert not trainer.teacher.training and not any(p.requires_grad for p in trainer.teacher.parameters())
    for name, tensor in trainer.teacher.state_dict().items():
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0, msg=name)
