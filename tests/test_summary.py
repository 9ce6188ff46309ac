import time

import pytest
import torch
from torch import nn

from hf_distill.summary import (
    count_parameters,
    directory_size_mb,
    format_markdown_table,
    make_latency_batch,
    measure_latency,
)


def test_count_parameters_matches_a_manual_sum(tiny_teacher):
    manual = sum(p.numel() for _, p in tiny_teacher.named_parameters())
    assert count_parameters(tiny_teacher) == manual

    tiny_teacher.bert.embeddings.requires_grad_(False)
    frozen = sum(p.numel() for p in tiny_teacher.bert.embeddings.parameters())
    assert frozen > 0
    assert count_parameters(tiny_teacher, trainable_only=True) == manual - frozen
    assert count_parameters(tiny_teacher) == manual


def test_shared_parameters_count_once():
    shared = nn.Linear(4, 3)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), nn.Linear(3, 4), shared)) == 15 + 16


def test_directory_size_counts_weight_files_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2**20)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0" * 2**19)
    (tmp_path / "config.json").write_bytes(b"\0" * 2**20)
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "model.safetensors").write_bytes(b"\0" * 2**20)
    assert directory_size_mb(tmp_path) == pytest.approx(1.5)
    assert directory_size_mb(str(tmp_path)) == pytest.approx(1.5)


def test_directory_size_of_a_saved_model(tmp_path, tiny_teacher):
    tiny_teacher.save_pretrained(tmp_path)
    size = directory_size_mb(tmp_path)
    assert size == pytest.approx((tmp_path / "model.safetensors").stat().st_size / 2**20)
    # float32 weights dominate the file
    assert size == pytest.approx(count_parameters(tiny_teacher) * 4 / 2**20, rel=0.1)


def test_directory_size_errors(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        directory_size_mb(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds no weight files \(\*\.safetensors, \*\.bin\)"):
        directory_size_mb(tmp_path)


def test_format_markdown_table():
    rows = [
        {"model": "teacher", "params": 4_386_050, "accuracy": 0.912345, "latency_ms": 12.3456, "size_mb": 16.7},
        {"model": "student-2", "params": 1_200, "accuracy": None, "latency_ms": 1234.5678},
    ]
    table = format_markdown_table(rows, ["model", "params", "accuracy", "latency_ms", "size_mb"])
    assert table == (
        "| model | params | accuracy | latency_ms | size_mb |\n"
        "|---|---|---|---|---|\n"
        "| teacher | 4386050 | 0.9123 | 12.35 | 16.7 |\n"
        "| student-2 | 1200 | – | 1235 | – |"
    )


def test_format_markdown_table_column_subset_and_order():
    table = format_markdown_table([{"a": 1.0, "b": 2, "c": "x"}], ["c", "a"])
    assert table.splitlines() == ["| c | a |", "|---|---|", "| x | 1 |"]


def test_make_latency_batch_shape(tiny_tokenizer):
    batch = make_latency_batch(tiny_tokenizer, batch_size=3, seq_length=16, device="cpu")
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    for tensor in batch.values():
        assert tensor.shape == (3, 16) and tensor.device.type == "cpu"
    assert bool(batch["attention_mask"].all())
    assert (batch["input_ids"][:, 0] == tiny_tokenizer.cls_token_id).all()
    assert (batch["input_ids"][:, -1] == tiny_tokenizer.sep_token_id).all()


def test_make_latency_batch_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="`seq_length` is 2, but this tokenizer adds 2 special tokens"):
        make_latency_batch(tiny_tokenizer, batch_size=1, seq_length=2, device="cpu")
    with pytest.raises(ValueError, match="`batch_size` must be at least 1, got 0"):
        make_latency_batch(tiny_tokenizer, batch_size=0, seq_length=8, device="cpu")


def test_measure_latency_on_a_model(tiny_teacher, tiny_tokenizer):
    batch = make_latency_batch(tiny_tokenizer, batch_size=2, seq_length=8, device="cpu")
    tiny_teacher.train()
    latency = measure_latency(tiny_teacher, batch, warmup=1, repeats=3)
    assert isinstance(latency, float) and latency > 0
    assert tiny_teacher.training


class SlowModule(nn.Module):
    """Sleeps `delays_s[i]` seconds on its i-th call and records the context it ran in."""

    def __init__(self, delays_s: list[float]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.delays_s = delays_s
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, input_ids):
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        time.sleep(self.delays_s[len(self.calls) - 1])
        return input_ids * self.weight


def test_measure_latency_times_the_runs_after_the_warm_up_in_eval_and_inference_mode():
    # Two slow warm-up calls, then timed calls of 5, 50 and 5 ms: the warm-up is not counted (per run: 20 ms).
    module = SlowModule([0.1, 0.1, 0.005, 0.05, 0.005])
    latency = measure_latency(module, {"input_ids": torch.ones(1, 4)}, warmup=2, repeats=3)
    assert 5 <= latency < 30
    assert module.calls == [(False, True)] * 5
    assert module.training


def test_measure_latency_validates_counts(tiny_teacher):
    with pytest.raises(ValueError, match="repeats=0"):
        measure_latency(tiny_teacher, {}, repeats=0)


def test_pair_latency_batch_has_both_segments_and_the_exact_shape(tiny_tokenizer):
    from hf_distill.summary import make_latency_batch

    batch = make_latency_batch(tiny_tokenizer, 3, 20, "cpu", pair=True)
    assert batch["input_ids"].shape == (3, 20)
    assert bool(batch["attention_mask"].all())
    segments = batch["token_type_ids"]
    assert bool((segments == 0).any(dim=1).all()) and bool((segments == 1).any(dim=1).all())
