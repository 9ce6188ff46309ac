"""Multi-process runs: both scripts under `torchrun --nproc_per_node 2` (gloo on CPU) give the metrics of one process
with the same global batch, and the teacher stays a plain per-rank model outside DDP."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_tokenizer

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402
from hf_distill import DistillationConfig, DistillationTrainer  # noqa: E402

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
            "--max_seq_length", "16", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
            "--use_cpu", "true"]
LOSS_TOLERANCE = 1e-4


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


def run_two_processes(script: str, args: list[str], cwd) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    # --standalone picks a free rendezvous port: other runs on the machine cannot collide with this one.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / script), *args]
    # One retry for launch failures only: --standalone picks a free port before binding it, which another process
    # can take in between. The metrics checks after a successful run stay exact.
    logs = []
    for _ in range(2):
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            return
        logs.append(result.stdout[-2000:] + result.stderr[-4000:])
    raise AssertionError("torchrun failed twice:\n" + "\n-----\n".join(logs))


def assert_same_metrics(one: dict, two: dict, keys: list[str]) -> None:
    for key in keys:
        assert two[key] == pytest.approx(one[key], abs=LOSS_TOLERANCE), key


def test_teacher_fine_tuning_on_two_processes_matches_one(workdir):
    common = ["--model_name_or_path", str(workdir / "teacher"), "--task_name", "sst2", "--data_dir",
              str(workdir / "SST-2"), *TRAINING]
    one = run_glue_teacher.main([*common, "--per_device_train_batch_size", "16", "--per_device_eval_batch_size",
                                 "16", "--output_dir", str(workdir / "teacher-1proc")])
    run_two_processes("run_glue_teacher.py", [*common, "--per_device_train_batch_size", "8",
                                              "--per_device_eval_batch_size", "8", "--output_dir",
                                              str(workdir / "teacher-2proc")], workdir)
    two = json.loads((workdir / "teacher-2proc" / "all_results.json").read_text())
    assert_same_metrics(one, two, ["eval_loss", "eval_accuracy"])
    untrained = run_glue_teacher.main([*common, "--learning_rate", "0", "--output_dir", str(workdir / "teacher-0")])
    assert abs(one["eval_loss"] - untrained["eval_loss"]) > 100 * LOSS_TOLERANCE  # training moved the metric


def test_distillation_on_two_processes_matches_one(workdir):
    common = ["--method", "kd", "--alpha", "0.5", "--temperature", "2", "--teacher_model_name_or_path",
              str(workdir / "teacher"), "--task_name", "sst2", "--data_dir", str(workdir / "SST-2"),
              "--student_layers", "2", *TRAINING]
    one = run_distill.main([*common, "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
                            "--output_dir", str(workdir / "student-1proc")])
    run_two_processes("run_distill.py", [*common, "--per_device_train_batch_size", "8",
                                         "--per_device_eval_batch_size", "8", "--output_dir",
                                         str(workdir / "student-2proc")], workdir)
    two = json.loads((workdir / "student-2proc" / "all_results.json").read_text())
    assert_same_metrics(one, two, ["eval_loss", "eval_loss_kd", "eval_loss_ce", "eval_accuracy", "teacher_eval_loss",
                                   "teacher_eval_accuracy"])
    assert two["train_samples"] == one["train_samples"] == 16
    assert one["eval_loss"] != pytest.approx(one["teacher_eval_loss"], abs=100 * LOSS_TOLERANCE)


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
