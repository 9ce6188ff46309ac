"""`teacher_dtype`: what `auto` resolves to, the config's checks, a teacher held in bf16 once with float32 logits and
losses, ensembles, and the teacher's evaluation in the dtype it distils in."""

import json
import logging
import sys

import pytest
import torch
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer, TeacherEnsemble
from hf_distill import teacher_cache as teacher_cache_module
from hf_distill.cli import DataArguments, evaluate_ensemble, evaluate_model, load_data, make_collator
from hf_distill.data import get_task
from hf_distill.teacher_cache import cpu_has_bf16, has_native_bf16, resolve_teacher_dtype

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402


def config(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), method="kd", max_steps=2, per_device_train_batch_size=8,
                    per_device_eval_batch_size=8, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                    seed=0)
    return DistillationConfig(**{**defaults, **kwargs})


def make_trainer(tmp_path, teacher=None, **kwargs):
    data = make_tiny_dataset(16)
    return DistillationTrainer(
        model=make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=teacher if teacher is not None else make_tiny_bert(seed=0, **NO_DROPOUT),
        args=config(tmp_path, **kwargs),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


@pytest.fixture
def real_probe(monkeypatch):
    """The real `has_native_bf16` (conftest pins it to False), over patchable hardware facts."""
    monkeypatch.setattr(teacher_cache_module, "has_native_bf16", has_native_bf16)


def test_explicit_names_resolve_as_given_and_others_are_refused():
    assert resolve_teacher_dtype("float32", "cpu") is torch.float32
    assert resolve_teacher_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_teacher_dtype("float16", "cuda") is torch.float16
    with pytest.raises(ValueError, match=r"`teacher_dtype` must be one of \['auto', 'float32', 'bfloat16', 'float16'"):
        resolve_teacher_dtype("int8", "cpu")


@pytest.mark.parametrize("capabilities, expected", [
    ({"amx_bf16": True, "avx512_bf16": False}, torch.bfloat16),
    ({"amx_bf16": False, "avx512_bf16": True}, torch.bfloat16),
    ({"amx_bf16": False, "avx512_bf16": False, "avx2": True}, torch.float32),
])
def test_auto_on_a_cpu_follows_its_bf16_features(real_probe, monkeypatch, caplog, capabilities, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities, raising=False)
    with caplog.at_level(logging.INFO, logger="hf_distill"):
        assert resolve_teacher_dtype("auto", "cpu") is expected
    assert f"teacher_dtype auto: the teacher runs in {str(expected)[6:]}" in caplog.text


def test_auto_on_a_gpu_asks_cuda_and_elsewhere_is_float32(real_probe, monkeypatch):
    for supported, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, supported=supported, **kwargs: supported)
        assert resolve_teacher_dtype("auto", "cuda") is expected
    assert resolve_teacher_dtype("auto", "meta") is torch.float32


def test_without_torch_capabilities_the_cpu_flags_come_from_proc_cpuinfo(monkeypatch):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    for flags, expected in (("fpu sse2 avx2 amx_bf16 amx_tile", True), ("fpu sse2 avx2 avx512f", False)):
        cpuinfo = f"processor : 0\nflags : {flags}\n"
        monkeypatch.setattr(teacher_cache_module.Path, "read_text", lambda self, *a, text=cpuinfo, **k: text)
        assert cpu_has_bf16() is expected


def test_the_config_records_what_auto_resolved_to(tmp_path, monkeypatch):
    assert config(tmp_path).teacher_dtype == "float32"  # the tests' probe: no bf16 hardware
    monkeypatch.setattr(teacher_cache_module, "has_native_bf16", lambda device: True)
    resolved = config(tmp_path)
    assert resolved.teacher_dtype == "bfloat16" and resolved.teacher_torch_dtype is torch.bfloat16
    assert resolved.effective_distillation_config()["teacher_dtype"] == "bfloat16"
    assert "teacher_dtype" not in resolved.method_settings()  # how the teacher runs, not what the method computes
    # Autocast computes from float32 weights: auto leaves them so; holding them in bf16 as well is refused.
    assert config(tmp_path, teacher_autocast_dtype="bfloat16").teacher_dtype == "float32"
    with pytest.raises(ValueError, match=r"`teacher_dtype`='bfloat16' .*`teacher_autocast_dtype`='bfloat16'.*one of"):
        config(tmp_path, teacher_dtype="bfloat16", teacher_autocast_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"`teacher_dtype` must be one of"):
        config(tmp_path, teacher_dtype="half")


def test_a_bfloat16_teacher_is_cast_once_and_hands_float32_logits_to_the_loss(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, method="pkd", teacher_dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in trainer.teacher.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    seen = []
    loss_terms = trainer.distillation_method.loss_terms

    def recording(inputs):
        terms = loss_terms(inputs)
        seen.append((inputs.teacher_outputs.logits.dtype, {name: value.dtype for name, (_, value) in terms.items()}))
        return terms

    monkeypatch.setattr(trainer.distillation_method, "loss_terms", recording)
    trainer.train()
    assert seen and all(logits is torch.float32 for logits, _ in seen)
    assert all(dtype is torch.float32 for _, terms in seen for dtype in terms.values())
    logs = [log for log in trainer.state.log_history if "loss_pkd" in log]
    assert logs and all(torch.isfinite(torch.tensor([log["loss"], log["loss_kd"], log["loss_pkd"]])).all()
                        for log in logs)
    assert all(p.dtype == torch.bfloat16 for p in trainer.teacher.parameters())  # never re-cast


def test_tinybert_reads_a_bfloat16_teachers_hidden_states_and_attention_in_float32(tmp_path):
    trainer = make_trainer(tmp_path, method="tinybert", tinybert_stage=1, teacher_dtype="bfloat16")
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_loss(trainer.model.train(), batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_float32_runs_the_teacher_as_loaded(tmp_path):
    reference = make_tiny_bert(seed=0, **NO_DROPOUT)
    trainer = make_trainer(tmp_path, teacher_dtype="float32")
    assert all(p.dtype == torch.float32 for p in trainer.teacher.parameters())
    batch = next(iter(trainer.get_eval_dataloader()))
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    online = trainer._teacher_outputs(batch, inputs, output_hidden_states=False)
    with torch.no_grad():
        torch.testing.assert_close(online.logits, reference(**inputs).logits, rtol=0, atol=0)


def test_an_ensemble_casts_its_teachers_not_its_temperature(tmp_path):
    ensemble = TeacherEnsemble([make_tiny_bert(seed=0), make_tiny_bert(seed=5)], temperature=3.3)
    trainer = make_trainer(tmp_path, teacher=ensemble, teacher_dtype="bfloat16", temperature=3.3)
    assert all(p.dtype == torch.bfloat16 for p in trainer.teacher.parameters())
    temperature = trainer.teacher.temperature
    assert temperature.dtype == torch.float32 and float(temperature) == pytest.approx(3.3)
    batch = next(iter(trainer.get_eval_dataloader()))
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    assert trainer._teacher_outputs(batch, inputs, output_hidden_states=False).logits.dtype == torch.float32


def test_an_ensembles_members_are_scored_from_its_own_pass(tmp_path):
    teachers = [make_tiny_bert(seed=0), make_tiny_bert(seed=5)]
    data, task = make_tiny_dataset(16), get_task("sst2")
    collator, args = DataCollatorWithPadding(make_tiny_tokenizer()), config(tmp_path)
    ensemble_metrics, member_metrics = evaluate_ensemble(TeacherEnsemble(teachers), args, data, collator, task)
    alone = evaluate_model(TeacherEnsemble(teachers), args, data, collator, task)
    assert ensemble_metrics["eval_accuracy"] == alone["eval_accuracy"]
    assert ensemble_metrics["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-5)
    for member, metrics in zip(teachers, member_metrics, strict=True):
        expected = evaluate_model(member, args, data, collator, task)
        assert metrics["eval_accuracy"] == expected["eval_accuracy"]
        assert metrics["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-5)  # 16 rows, batches of 8


def test_run_distill_evaluates_the_teacher_in_its_teacher_dtype(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    out = tmp_path / "student"
    metrics = run_distill.main([
        "--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2",
        "--data_dir", str(tiny_sst2_dir), "--student_layers", "1", "--output_dir", str(out), "--max_steps", "1",
        "--teacher_dtype", "bfloat16", "--max_seq_length", "32", "--report_to", "none", "--save_strategy", "no",
        "--disable_tqdm", "true", "--use_cpu", "true",
    ])
    assert json.loads((out / "distillation_config.json").read_text())["teacher_dtype"] == "bfloat16"
    student = json.loads((out / "config.json").read_text())
    assert student.get("dtype", student.get("torch_dtype")) == "float32"  # built from the float32 weights
    data_args = DataArguments(task_name="sst2", data_dir=str(tiny_sst2_dir), max_seq_length=32)
    _, tokenized, task = load_data(data_args, make_tiny_tokenizer(), 0)
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    collator = make_collator(make_tiny_tokenizer(), data_args, task)
    float32 = evaluate_model(teacher, config(tmp_path / "eval"), tokenized["validation"], collator, task)
    bfloat16 = evaluate_model(teacher.to(torch.bfloat16), config(tmp_path / "eval"), tokenized["validation"],
                              collator, task)
    assert metrics["teacher_eval_accuracy"] == bfloat16["eval_accuracy"]
    assert metrics["teacher_eval_loss"] == pytest.approx(bfloat16["eval_loss"], rel=1e-6)
    assert metrics["teacher_eval_loss"] != pytest.approx(float32["eval_loss"], rel=1e-6)
