import json
import sys

import datasets
import pytest
import torch
from conftest import REPO_ROOT, SST2_ROWS, make_tiny_bert, make_tiny_tokenizer
from torch.utils.data import DataLoader, DistributedSampler
from transformers import DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.teacher_cache import (
    CACHE_ROW_COLUMN,
    COMPLETE_MARKER,
    KEY_FILE,
    OUTPUTS_FILE,
    TeacherCache,
    TeacherCacheKey,
    check_teacher_cache_settings,
    load_or_build_teacher_cache,
    teacher_forward,
)

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
PKD_LAYERS = (2,)  # 4-layer teacher, 2-layer student, PKD-Skip: student layer 1 <- teacher layer 2


def tokenized(sentences: list[str], labels: list[int] | None = None, idx: list[int] | None = None):
    tokenizer = make_tiny_tokenizer()
    data = datasets.Dataset.from_dict({
        "sentence": sentences,
        "labels": labels if labels is not None else [i % 2 for i in range(len(sentences))],
        "idx": idx if idx is not None else list(range(len(sentences))),
    })
    return data.map(lambda batch: tokenizer(batch["sentence"]), batched=True, remove_columns=["sentence"])


def augmented_dataset() -> datasets.Dataset:
    """Each SST-2 row followed by two variants that share its `idx` (as an augmented file does), 24 rows."""
    sentences, idx = [], []
    for i, (sentence, _) in enumerate(SST2_ROWS):
        words = sentence.split()
        sentences += [sentence, " ".join(words[::-1]), " ".join(["very", *words])]
        idx += [i, i, i]
    return tokenized(sentences, idx=idx)


def make_trainer(tmp_path, data, method="kd", teacher=None, **config_kwargs):
    config = DistillationConfig(
        output_dir=str(tmp_path / "out"), method=method, max_steps=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
        **config_kwargs,
    )
    return DistillationTrainer(
        model=make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=teacher if teacher is not None else make_tiny_bert(seed=0, **NO_DROPOUT),
        args=config,
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


def build(path, data, teacher=None, method="kd", layers=(), **kwargs) -> TeacherCache:
    teacher = teacher if teacher is not None else make_tiny_bert(seed=0)
    return load_or_build_teacher_cache(
        path, teacher, data, method, layers, batch_size=4, show_progress=False, **kwargs
    )


@pytest.mark.parametrize("method", ["kd", "pkd"])
def test_cached_and_online_losses_match_on_the_same_batch(tmp_path, method):
    data = augmented_dataset()
    teacher = make_tiny_bert(seed=0, **NO_DROPOUT)
    with torch.no_grad():  # a random tiny teacher's logits barely differ between rows: spread them so mix-ups show
        teacher.classifier.weight.mul_(100)
    settings = dict(method=method, teacher=teacher, temperature=1.0)
    online = make_trainer(tmp_path / "online", data, **settings)
    cached = make_trainer(tmp_path / "cached", data, teacher_cache=str(tmp_path / "cache"), **settings)
    assert cached.teacher_cache is not None and online.teacher_cache is None
    batch = next(iter(cached.get_train_dataloader()))
    assert CACHE_ROW_COLUMN in batch
    online_batch = {k: v for k, v in batch.items() if k != CACHE_ROW_COLUMN}
    losses = {}
    for name, trainer, inputs in [("online", online, online_batch), ("cached", cached, batch)]:
        trainer.model.eval()
        with torch.no_grad():
            losses[name] = trainer.compute_loss(trainer.model, inputs).item()
        losses[name + "_terms"] = {k: torch.stack(v).item() for k, v in trainer._term_buffer["eval"].items()}
    assert losses["online"] == pytest.approx(losses["cached"], rel=1e-5, abs=1e-5)
    assert losses["online_terms"].keys() == losses["cached_terms"].keys()
    assert ("loss_pkd" in losses["cached_terms"]) == (method == "pkd")
    for term, value in losses["online_terms"].items():
        assert value == pytest.approx(losses["cached_terms"][term], rel=1e-5, abs=1e-6)


def test_training_from_the_cache_never_runs_the_teacher(tmp_path):
    trainer = make_trainer(tmp_path, augmented_dataset(), method="pkd", teacher_cache=str(tmp_path / "cache"))
    calls = []
    trainer.teacher.register_forward_hook(lambda module, args, output: calls.append(1))
    trainer.train()
    assert calls == [] and trainer.state.global_step == 2
    trainer.evaluate()  # the dev set is not cached: the teacher runs
    assert calls


def test_shuffled_sharded_epochs_read_each_rows_own_outputs(tmp_path):
    data = augmented_dataset()
    teacher = make_tiny_bert(seed=0)
    cache = build(tmp_path / "cache", data, teacher, method="pkd", layers=(1, 3))
    attached = cache.attach(data)
    collator = DataCollatorWithPadding(make_tiny_tokenizer())
    seen = []
    for rank in range(2):  # two data-parallel processes, two shuffled epochs each
        sampler = DistributedSampler(attached, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(attached.remove_columns("idx"), batch_size=5, sampler=sampler, collate_fn=collator)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for batch in loader:
                rows = batch.pop(CACHE_ROW_COLUMN)
                batch.pop("labels")
                cached = cache.lookup(rows)
                logits, cls = teacher_forward(teacher, batch, (1, 3))
                torch.testing.assert_close(cached.logits, logits, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(cached.hidden_states[1][:, 0], cls[:, 0], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(cached.hidden_states[3][:, 0], cls[:, 1], atol=1e-5, rtol=1e-5)
                seen += rows.tolist()
    assert sorted(seen) == sorted(list(range(len(data))) * 2)
    # rows 0, 1, 2 share idx 0 but are different sentences: keyed by position, their outputs differ
    first = cache.lookup(torch.tensor([0, 1, 2])).logits
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[0], first[2])


def test_cache_is_reused_and_refuses_another_teacher_dataset_or_layer_map(tmp_path):
    data = augmented_dataset()
    path = tmp_path / "cache"
    build(path, data, method="pkd", layers=PKD_LAYERS)
    written = (path / OUTPUTS_FILE).stat().st_mtime_ns
    assert build(path, data, method="pkd", layers=PKD_LAYERS).key.teacher_layers == PKD_LAYERS
    assert (path / OUTPUTS_FILE).stat().st_mtime_ns == written  # reused, not rebuilt

    changed = tokenized(["the plot is good", *[SST2_ROWS[0][0]] * 23])
    with pytest.raises(ValueError, match=r"`teacher_cache`.*\n.*teacher weights"):
        build(path, data, teacher=make_tiny_bert(seed=5), method="pkd", layers=PKD_LAYERS)
    with pytest.raises(ValueError, match=r"`teacher_cache`(.|\n)*training set(.|\n)*--overwrite_teacher_cache"):
        build(path, changed, method="pkd", layers=PKD_LAYERS)
    with pytest.raises(ValueError, match=r"`teacher_cache`(.|\n)*method(.|\n)*teacher layers"):
        build(path, data, method="kd")
    with pytest.raises(ValueError, match=r"teacher_autocast_dtype"):
        build(path, data, method="pkd", layers=PKD_LAYERS, teacher_autocast_dtype="bfloat16")

    rebuilt = build(path, changed, method="kd", overwrite=True)
    assert rebuilt.key.method == "kd" and rebuilt.key.teacher_layers == ()
    assert json.loads((path / KEY_FILE).read_text())["dataset_fingerprint"] == rebuilt.key.dataset_fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temporary or old folders left behind


def test_an_interrupted_build_leaves_nothing_that_looks_complete(tmp_path):
    data = augmented_dataset()
    teacher = make_tiny_bert(seed=0)
    calls = []

    def fail_on_third_batch(module, args, kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed mid-build")

    handle = teacher.register_forward_pre_hook(fail_on_third_batch, with_kwargs=True)
    path = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed mid-build"):
        build(path, data, teacher)
    handle.remove()
    assert list(tmp_path.iterdir()) == []

    # a folder whose build died without cleanup (no COMPLETE marker) is refused, then replaced on request
    path.mkdir()
    (path / OUTPUTS_FILE).write_bytes(b"partial")
    with pytest.raises(ValueError, match=r"`teacher_cache`.*no complete teacher cache.*--overwrite_teacher_cache"):
        build(path, data, teacher)
    with pytest.raises(ValueError, match="no complete teacher cache"):
        TeacherCache.load(path)
    cache = build(path, data, teacher, overwrite=True)
    assert (path / COMPLETE_MARKER).is_file() and len(cache) == len(data)

    other = tmp_path / "not_a_cache"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="`teacher_cache`.*is not a teacher cache"):
        build(other, data, teacher, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_settings_that_cannot_use_a_cache_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="`teacher_cache`.*tinybert.*Drop `teacher_cache`"):
        check_teacher_cache_settings("tinybert", "cache", None)
    with pytest.raises(ValueError, match="`teacher_autocast_dtype`.*'int8'"):
        DistillationConfig(output_dir=str(tmp_path), teacher_autocast_dtype="int8", use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="`teacher_cache`.*datasets.Dataset"):
        make_trainer(tmp_path, list(augmented_dataset()), teacher_cache=str(tmp_path / "cache"))


def test_run_distill_builds_the_cache_and_refuses_other_data(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    cache = tmp_path / "cache"

    def run(output_dir, *extra):
        return run_distill.main([
            "--method", "pkd", "--teacher_model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2",
            "--data_dir", str(tiny_sst2_dir), "--student_layers", "2", "--max_steps", "2", "--output_dir",
            str(tmp_path / output_dir), "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true",
            "--disable_tqdm", "true", "--teacher_cache", str(cache), *extra,
        ])

    metrics = run("first", "--max_seq_length", "32")
    key = json.loads((cache / KEY_FILE).read_text())
    assert (key["method"], key["teacher_layers"], key["num_rows"]) == ("pkd", [2], 8)
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    with pytest.raises(ValueError, match="`teacher_cache`(.|\n)*tokenized training set"):
        run("second", "--max_seq_length", "4")


def test_teacher_autocast_runs_the_online_teacher_in_bfloat16(tmp_path):
    data = augmented_dataset()
    losses = []
    for dtype in (None, "bfloat16"):
        trainer = make_trainer(tmp_path / str(dtype), data, method="pkd", teacher_autocast_dtype=dtype)
        batch = next(iter(trainer.get_eval_dataloader()))
        trainer.model.eval()
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, batch).item())
    assert losses[1] == pytest.approx(losses[0], rel=2e-2) and losses[1] != losses[0]


def test_the_cache_records_the_teacher_dtype_and_refuses_another(tmp_path):
    data = augmented_dataset()
    path = tmp_path / "cache"
    built = make_trainer(tmp_path / "bf16", data, teacher_cache=str(path), teacher_dtype="bfloat16").teacher_cache
    assert built.key.teacher_dtype == json.loads((path / KEY_FILE).read_text())["teacher_dtype"] == "bfloat16"
    with pytest.raises(ValueError, match=r"`teacher_cache`(.|\n)*teacher_dtype \(.*\): cache has 'bfloat16', this run "
                                         r"needs 'float32'(.|\n)*--overwrite_teacher_cache"):
        make_trainer(tmp_path / "fp32", data, teacher_cache=str(path), teacher_dtype="float32")
    # A cache written before the key had the field was built by a float32 teacher.
    payload = json.loads((path / KEY_FILE).read_text())
    del payload["teacher_dtype"]
    assert TeacherCacheKey.from_json(payload).teacher_dtype == "float32"
