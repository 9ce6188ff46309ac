"""The teacher under each multi-process backend (hf_distill.distributed): a frozen replica made identical on every
rank, or under DeepSpeed ZeRO-3 a partitioned inference engine whose outputs, parameter count and students equal
the replica's. DeepSpeed and torch.distributed state live in worker processes (tests/distributed_workers.py)."""

import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_tokenizer
from test_multiprocess import WORKERS, run_two_processes, torchrun_available

from hf_distill.distributed import deepspeed_inference_config, prepare_teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed_teacher")
    teacher = make_tiny_bert(seed=0, num_hidden_layers=2)
    teacher.config.id2label, teacher.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    teacher.save_pretrained(root / "teacher")
    make_tiny_tokenizer().save_pretrained(root / "teacher")
    return root / "teacher"


def run_worker(*args: str) -> str:
    with socket.socket() as probe:  # a free port for the one-process group DeepSpeed initialises
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / WORKERS), *args], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    return result.stdout


def test_inference_config_drops_training_sections_and_fills_auto_bucket_sizes():
    train = {
        "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                              "stage3_param_persistence_threshold": "auto", "offload_param": {"device": "cpu"}},
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-5}},
        "scheduler": {"type": "WarmupLR"},
        "bf16": {"enabled": True},
        "train_micro_batch_size_per_gpu": 8,
        "train_batch_size": 16,
    }
    config = deepspeed_inference_config(train, hidden_size=4)
    assert "optimizer" not in config and "scheduler" not in config
    assert config["zero_optimization"] == {"stage": 3, "reduce_bucket_size": 16, "stage3_prefetch_bucket_size": 14,
                                           "stage3_param_persistence_threshold": 40,
                                           "offload_param": {"device": "cpu"}}
    assert config["bf16"] == {"enabled": True} and config["train_batch_size"] == 16
    assert "optimizer" in train and train["zero_optimization"]["reduce_bucket_size"] == "auto"  # input untouched


def test_inference_config_names_values_left_auto():
    train = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto", "fp16": {"enabled": "auto"}}
    with pytest.raises(ValueError, match=r"\['fp16.enabled', 'train_micro_batch_size_per_gpu'\]"):
        deepspeed_inference_config(train, hidden_size=4)


def test_replicated_teacher_is_frozen_in_eval_mode(tiny_teacher):
    tiny_teacher.train()
    teacher, engine = prepare_teacher(tiny_teacher, "cpu")
    assert teacher is tiny_teacher and engine is None
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # ZeRO-1/2 shard optimizer states and gradients, which a frozen teacher has none of: it stays a replica.
    teacher, engine = prepare_teacher(tiny_teacher, "cpu", {"zero_optimization": {"stage": 2}})
    assert teacher is tiny_teacher and engine is None


@pytest.mark.skipif(not torchrun_available(), reason="torch.distributed with gloo is not available")
def test_every_rank_gets_rank_zeros_teacher(teacher_dir, tmp_path):
    run_two_processes(WORKERS, ["broadcast", str(teacher_dir), str(tmp_path)], tmp_path)
    assert sorted(path.name for path in tmp_path.glob("*.ok")) == ["rank0.ok", "rank1.ok"]


def test_zero3_teacher_matches_the_replica(teacher_dir):
    pytest.importorskip("deepspeed")
    assert "zero3 ok" in run_worker("zero3", str(teacher_dir))


def test_deepspeed_settings_that_cannot_work_are_refused():
    pytest.importorskip("deepspeed")
    assert "guards ok" in run_worker("deepspeed_guards")


def test_partitioned_teacher_without_zero3_config_is_refused(tiny_teacher):
    parameter = next(tiny_teacher.parameters())
    parameter.ds_id = 0  # what DeepSpeed's zero.Init marks a partitioned parameter with
    try:
        with pytest.raises(ValueError, match="ZeRO-3 partitioned"):
            prepare_teacher(tiny_teacher, "cpu")
    finally:
        del parameter.ds_id
