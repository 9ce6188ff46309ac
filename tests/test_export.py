"""ONNX export of every student type (truncated BERT, SPS, BiLSTM; sequence and token classification): onnxruntime
logits equal PyTorch's on padded batches, the int8 file is smaller, the folder is what Optimum reads, evaluation and
latency through onnxruntime, the missing-extra error and the command line; `run_distill.py --export onnx
--quantize dynamic` end to end (files, closing-table rows, result files, model card, what the push uploads) and its
argument checks."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_bert_config, make_tiny_dataset, make_tiny_tokenizer
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertForTokenClassification,
    BertModel,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

pytest.importorskip("onnxruntime")

from test_bad_input import distill_argv, refused  # noqa: E402
from test_cross_tokenizer import make_student_tokenizer  # noqa: E402
from test_model_card import FakeHub  # noqa: E402
from test_token_classification import CONLL_SNIPPET  # noqa: E402

from hf_distill import cli, export  # noqa: E402
from hf_distill.data import CONLL2003_TASK, build_compute_metrics, get_task  # noqa: E402
from hf_distill.export import (  # noqa: E402
    ExportArguments,
    MissingOnnxExtraError,
    check_export_arguments,
    evaluate_onnx,
    export_onnx,
    load_onnx_session,
    load_student,
    onnx_latency,
)
from hf_distill.students import build_bilstm_student, build_sps_student, build_student_from_teacher  # noqa: E402
from hf_distill.summary import make_latency_batch  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402

# Hidden size 64 (not conftest's 32): at 32 the graph's node names outweigh the weights, so int8 could not be smaller.
WIDTH = dict(hidden_size=64, intermediate_size=64)
NUM_TAGS = len(CONLL2003_TASK.label_names)
CHECK_TEXTS = ["good", "the plot is awful and the acting poor , really", "she loved the film"]


def make_tagger_teacher() -> BertForTokenClassification:
    torch.manual_seed(0)
    config = make_tiny_bert_config(num_labels=NUM_TAGS, **WIDTH)
    config.id2label = dict(enumerate(CONLL2003_TASK.label_names))
    config.label2id = {name: i for i, name in enumerate(CONLL2003_TASK.label_names)}
    return BertForTokenClassification(config).eval()


def build(kind: str, tokenizer):
    """A tiny student of `kind`, built as the library builds it from a tiny random teacher."""
    teacher = make_tagger_teacher() if kind.endswith("_token") else make_tiny_bert(seed=0, **WIDTH)
    token = kind.endswith("_token")
    if kind.startswith("bert"):
        return build_student_from_teacher(teacher, num_layers=1)
    if kind.startswith("sps"):
        return build_sps_student(teacher, num_layers=1)
    num_labels = NUM_TAGS if token else 2
    torch.manual_seed(0)
    return build_bilstm_student(
        tokenizer, num_labels=num_labels, is_pair=kind == "bilstm_pair", teacher=teacher, token_classification=token,
        **({} if token else {"pooling": "last"}),
    )


def save(kind: str, path):
    tokenizer = make_tiny_tokenizer()
    build(kind, tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def pytorch_and_onnx_logits(model_dir, onnx_path, texts, pairs=False):
    model, tokenizer = load_student(model_dir)
    encoded = tokenizer(texts, texts[::-1] if pairs else None, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**encoded).logits.numpy()
    session = load_onnx_session(onnx_path)
    actual = session.run(["logits"], {i.name: encoded[i.name].numpy() for i in session.get_inputs()})[0]
    return expected, actual, [i.name for i in session.get_inputs()]


KINDS = ["bert", "sps", "bilstm", "bilstm_pair", "bert_token", "sps_token", "bilstm_token"]


@pytest.mark.parametrize("kind", KINDS)
def test_export_matches_pytorch_and_int8_is_smaller(kind, tmp_path):
    model_dir = save(kind, tmp_path / "student")
    result = export_onnx(model_dir, quantize=True)

    folder = model_dir / "onnx"
    assert result["onnx_path"] == str(folder / "model.onnx")
    assert result["quantized_path"] == str(folder / "model_quantized.onnx")
    assert result["exporter"] == "torchscript"
    assert 0 <= result["max_abs_diff_fp32"] <= 1e-4
    assert 0 <= result["max_abs_diff_int8"] < 1.0
    assert 0.0 <= result["argmax_agreement_int8"] <= 1.0
    assert 0 < result["size_mb_int8"] < result["size_mb_fp32"]
    assert result["size_mb_fp32"] == pytest.approx((folder / "model.onnx").stat().st_size / 2**20)

    # Not the texts the export checked with: other batch sizes and lengths (the axes are dynamic), padded.
    expected, actual, inputs = pytorch_and_onnx_logits(model_dir, folder, CHECK_TEXTS, pairs=kind == "bilstm_pair")
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    segments = kind.startswith(("bert", "sps")) or kind == "bilstm_pair"
    assert inputs == ["input_ids", "attention_mask"] + (["token_type_ids"] if segments else [])

    # The layout Optimum's ORTModel reads: model, config (with the custom code) and tokenizer in one folder.
    config = AutoConfig.from_pretrained(folder)
    assert config.to_dict()["architectures"] == json.loads((model_dir / "config.json").read_text())["architectures"]
    assert AutoTokenizer.from_pretrained(folder).vocab == make_tiny_tokenizer().vocab
    custom_code = sorted(path.name for path in model_dir.glob("*.py"))
    assert sorted(path.name for path in folder.glob("*.py")) == custom_code
    if kind.startswith(("sps", "bilstm")):
        assert custom_code  # the remote-code files travel with the config
    assert not [path for path in tmp_path.rglob(".*tmp-*")]  # no temporary folder left


@pytest.mark.parametrize("kind", ["bert", "sps", "bilstm"])
def test_unpadded_and_single_row_batches(kind, tmp_path):
    """The trace saw padded batches; an unpadded one and a single row still match (no data-dependent constant)."""
    model_dir = save(kind, tmp_path / "student")
    export_onnx(model_dir, sample_texts=["good movie", "a very bad , dull film", "bad", "the story"])
    for texts in (["good bad", "bad good"], ["the plot is awful"]):
        expected, actual, _ = pytorch_and_onnx_logits(model_dir, model_dir / "onnx", texts)
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_output_dir_and_no_quantize(tmp_path):
    model_dir = save("bert", tmp_path / "student")
    result = export_onnx(model_dir, tmp_path / "exported")
    assert result["onnx_path"] == str(tmp_path / "exported" / "onnx" / "model.onnx")
    assert result["quantized_path"] is None and result["size_mb_int8"] is None
    assert result["max_abs_diff_int8"] is None and result["argmax_agreement_int8"] is None
    assert not (model_dir / "onnx").exists()
    assert not (tmp_path / "exported" / "onnx" / "model_quantized.onnx").exists()


def test_tolerance_exceeded_raises_and_keeps_previous_export(tmp_path, monkeypatch):
    model_dir = save("bert", tmp_path / "student")
    export_onnx(model_dir)
    before = (model_dir / "onnx" / "model.onnx").read_bytes()
    monkeypatch.setattr(export, "_compare", lambda session, model, batches: (0.5, 1.0))
    with pytest.raises(ValueError, match=r"above the tolerance `atol`=0\.0001"):
        export_onnx(model_dir, quantize=True)
    assert (model_dir / "onnx" / "model.onnx").read_bytes() == before
    assert not (model_dir / "onnx" / "model_quantized.onnx").exists()


@pytest.mark.parametrize("module", ["onnxruntime", "onnx"])
def test_missing_extra_error(tmp_path, monkeypatch, module):
    model_dir = save("bert", tmp_path / "student")
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ValueError, match=r'`--export onnx` needs the onnx extra: pip install -e "\.\[onnx\]"') as info:
        export_onnx(model_dir)
    assert isinstance(info.value, ImportError) and isinstance(info.value, MissingOnnxExtraError)
    assert not (model_dir / "onnx").exists()


def test_not_a_classifier_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    BertModel(make_tiny_bert_config()).save_pretrained(tmp_path / "base")
    make_tiny_tokenizer().save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="ForSequenceClassification"):
        export_onnx(tmp_path / "base")


def trainer_predictions(model, dataset, collator, compute_metrics, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_eval_batch_size=5, report_to=[],
                             use_cpu=True)
    trainer = Trainer(model=model, args=args, eval_dataset=dataset, data_collator=collator,
                      compute_metrics=compute_metrics)
    return trainer.evaluate()


def recording(compute_metrics, store):
    def wrapped(prediction):
        store.append(prediction)
        return compute_metrics(prediction)

    return wrapped


@pytest.mark.parametrize("kind", ["sps", "bilstm"])
def test_evaluate_onnx_matches_trainer(kind, tmp_path):
    model_dir = save(kind, tmp_path / "student")
    result = export_onnx(model_dir, quantize=True)
    model, tokenizer = load_student(model_dir)
    dataset = make_tiny_dataset(13)  # with an `idx` column the session has no input for
    collator = DataCollatorWithPadding(tokenizer)
    metrics = build_compute_metrics(get_task("sst2"))

    torch_seen, onnx_seen = [], []
    expected = trainer_predictions(model, dataset, collator, recording(metrics, torch_seen), tmp_path)
    actual = evaluate_onnx(result["onnx_path"], dataset, collator, recording(metrics, onnx_seen), batch_size=5)
    assert actual["eval_accuracy"] == pytest.approx(expected["eval_accuracy"], abs=1e-12)
    np.testing.assert_allclose(onnx_seen[0].predictions, torch_seen[0].predictions, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(onnx_seen[0].label_ids, torch_seen[0].label_ids)

    int8 = evaluate_onnx(result["quantized_path"], dataset, collator, metrics, metric_key_prefix="int8")
    assert 0.0 <= int8["int8_accuracy"] <= 1.0


def tagged_dataset(tokenizer):
    """Rows of word lists with NER tags, tokenized with labels on first sub-tokens (-100 elsewhere), unpadded."""
    import datasets

    sentences = [["he", "sold", "shares"], ["the", "company", "said", "the", "market", "rose"], ["she"],
                 ["people", "bought", "two", "million", "shares", "this", "year"], ["the", "man", "said"]] * 2
    rows = []
    for i, words in enumerate(sentences):
        encoded = tokenizer(words, is_split_into_words=True)
        previous, labels = None, []
        for word_id in encoded.word_ids():
            labels.append(-100 if word_id is None or word_id == previous else (i + word_id) % NUM_TAGS)
            previous = word_id
        rows.append({**encoded, "labels": labels})
    return datasets.Dataset.from_list(rows)


@pytest.mark.parametrize("kind", ["bert_token", "bilstm_token"])
def test_evaluate_onnx_token_classification_matches_trainer(kind, tmp_path):
    model_dir = save(kind, tmp_path / "student")
    result = export_onnx(model_dir)
    model, tokenizer = load_student(model_dir)
    dataset = tagged_dataset(tokenizer)
    collator = DataCollatorForTokenClassification(tokenizer)
    metrics = build_compute_metrics(CONLL2003_TASK)

    expected = trainer_predictions(model, dataset, collator, metrics, tmp_path)
    actual = evaluate_onnx(result["onnx_path"], dataset, collator, metrics, batch_size=5)
    for key in ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-12), key


def test_onnx_latency(tmp_path):
    model_dir = save("bert", tmp_path / "student")
    result = export_onnx(model_dir, quantize=True)
    batch = make_latency_batch(make_tiny_tokenizer(), 4, 16, "cpu")
    for path in (result["onnx_path"], result["quantized_path"], load_onnx_session(model_dir / "onnx")):
        assert onnx_latency(path, batch, warmup=1, repeats=3) > 0
    with pytest.raises(ValueError, match="repeats"):
        onnx_latency(result["onnx_path"], batch, repeats=0)


def test_command_line(tmp_path, capsys):
    model_dir = save("sps", tmp_path / "student")
    result = export.main([str(model_dir), "--quantize", "--output_dir", str(tmp_path / "out")])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert (tmp_path / "out" / "onnx" / "model.onnx").is_file()
    assert (tmp_path / "out" / "onnx" / "model_quantized.onnx").is_file()


def test_torch_export_fallback(tmp_path, monkeypatch):
    """When the TorchScript exporter fails, the torch.export-based one is used (and checked the same way)."""
    pytest.importorskip("onnxscript")
    model_dir = save("bert", tmp_path / "student")
    real_export = torch.onnx.export

    def torchscript_fails(*args, **kwargs):
        if not kwargs.get("dynamo"):
            raise RuntimeError("TorchScript exporter unavailable")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", torchscript_fails)
    result = export_onnx(model_dir)
    assert result["exporter"] == "dynamo"
    assert result["max_abs_diff_fp32"] <= 1e-4


# -- run_distill.py --export onnx ------------------------------------------------------------------------------------

# Each run: the student it builds (truncated BERT, SPS, BiLSTM, a student with its own tokenizer, a truncated tagger).
EXPORTED_RUNS = {
    "kd": ["--method", "kd", "--student_layers", "1"],
    "peakd": ["--method", "peakd", "--student_layers", "1", "--ptp", "false"],
    "bilstm": ["--method", "bilstm", "--bilstm_hidden_size", "8", "--bilstm_fc_hidden_size", "8"],
    "cross_tokenizer": ["--method", "kd", "--student_tokenizer", "{tmp}/student_tokenizer", "--student_config",
                        '{{"num_hidden_layers": 1}}'],
    "token": ["--method", "kd", "--student_layers", "1"],
}


@pytest.mark.parametrize("run", list(EXPORTED_RUNS))
def test_run_distill_exports_onnx_adds_its_rows_and_pushes_them(run, tmp_path, monkeypatch, tiny_teacher_dir,
                                                               tiny_sst2_dir):
    import transformers

    hub = FakeHub()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    evaluated = []  # the datasets the ONNX models are scored on

    def recording_evaluate_onnx(session, dataset, *args, **kwargs):
        evaluated.append(dataset)
        return evaluate_onnx(session, dataset, *args, **kwargs)

    monkeypatch.setattr(cli, "evaluate_onnx", recording_evaluate_onnx)
    make_student_tokenizer().save_pretrained(tmp_path / "student_tokenizer")
    if run == "token":
        teacher_dir, data = tmp_path / "tagger", tmp_path / "conll2003"
        make_tagger_teacher().save_pretrained(teacher_dir)
        make_tiny_tokenizer().save_pretrained(teacher_dir)
        data.mkdir()
        for name in ("train.txt", "valid.txt"):
            (data / name).write_text(CONLL_SNIPPET, encoding="utf-8")
        task = ["--task_name", "conll2003", "--data_dir", str(data)]
    else:
        teacher_dir, task = tiny_teacher_dir, ["--task_name", "sst2", "--data_dir", str(tiny_sst2_dir)]
    out = tmp_path / "student"
    metrics = run_distill.main([
        *[arg.format(tmp=tmp_path) for arg in EXPORTED_RUNS[run]], "--teacher_model_name_or_path", str(teacher_dir),
        *task, "--max_steps", "2", "--max_seq_length", "32", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4", "--output_dir", str(out), "--report_to", "none", "--save_strategy", "no",
        "--disable_tqdm", "true", "--use_cpu", "true", "--push_to_hub", "--hub_model_id", "me/tiny",
        "--export", "onnx", "--quantize", "dynamic",
    ])
    metric = "f1" if run == "token" else "accuracy"

    folder = out / "onnx"
    assert {"model.onnx", "model_quantized.onnx", "config.json", "tokenizer_config.json"} <= {
        path.name for path in folder.iterdir()}
    rows = metrics["summary"]
    assert [row["model"] for row in rows] == ["teacher", f"student ({EXPORTED_RUNS[run][1]})", "student (ONNX fp32)",
                                              "student (ONNX int8)"]
    student, fp32, int8 = rows[1:]
    latency = next(key for key in student if key.startswith("latency"))
    for row, file in ((fp32, "model.onnx"), (int8, "model_quantized.onnx")):
        assert list(row) == list(student)  # the same columns
        assert math.isfinite(row[metric]) and 0 < row[latency] < math.inf and row["speed-up"] > 0
        assert row["size on disk (MB)"] == pytest.approx((folder / file).stat().st_size / 2**20)
        assert row["parameters (M)"] == student["parameters (M)"]
    # The fp32 graph's logits equal PyTorch's (to 1e-4), so it scores the student's metric on the student's inputs
    # (its own tokenizer's, in a cross-tokenizer run).
    assert fp32[metric] == pytest.approx(student[metric], abs=1e-12)
    tokenizer = make_student_tokenizer() if run == "cross_tokenizer" else make_tiny_tokenizer()
    first = (tokenizer(["the", "market", "rose"], is_split_into_words=True) if run == "token"
             else tokenizer("the movie was great fun"))
    assert len(evaluated) == 2 and all(data[0]["input_ids"] == first["input_ids"] for data in evaluated)

    summary = (out / "summary.md").read_text()
    assert "| student (ONNX fp32) |" in summary and "| student (ONNX int8) |" in summary
    results = json.loads((out / "all_results.json").read_text())
    for key in (f"onnx_fp32_eval_{metric}", f"onnx_int8_eval_{metric}", "onnx_max_abs_diff_fp32"):
        assert key in results and key in json.loads((out / "onnx_results.json").read_text()) and key in metrics
    assert results[f"onnx_fp32_eval_{metric}"] == fp32[metric]

    # The card's table shows the ONNX rows; its headline and metadata still describe the PyTorch student.
    card = (out / "README.md").read_text()
    assert f"| student (ONNX int8) | {int8[metric]:.4g} |" in card and "onnx/model_quantized.onnx" in card
    assert f"{student['speed-up']:.4g}× in batch latency" in card
    # The push uploads output_dir with the export in it (Trainer ignores only `_*` and `checkpoint-*`).
    uploaded = hub.uploads[-1]["files"]
    assert {"onnx/model.onnx", "onnx/model_quantized.onnx", "onnx/config.json", "onnx_results.json"} <= uploaded
    assert hub.uploads[-1]["readme"] == card


BAD_EXPORT_ARGUMENTS = {
    "format": (["--export", "tflite"], r"`--export` is 'tflite', but the only export format is 'onnx': pass "
                                       r"`--export onnx`"),
    "quantization": (["--export", "onnx", "--quantize", "static"], r"`--quantize` is 'static', but the only "
                                                                   r"quantization is 'dynamic'"),
    "quantize_alone": (["--quantize", "dynamic"], r"`--quantize dynamic` quantizes the ONNX export, but `--export` "
                                                  r"is not set: add `--export onnx`"),
    "adapter_only": (["--export", "onnx", "--student_peft", "--no_merge_student_peft"],
                     r"`--export onnx` exports the saved student, but `--no_merge_student_peft` saves only"),
}


@pytest.mark.parametrize("case", list(BAD_EXPORT_ARGUMENTS))
def test_run_distill_export_arguments_are_checked_at_startup(case, tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    extra, match = BAD_EXPORT_ARGUMENTS[case]
    refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, *extra), match)


def test_run_distill_export_without_the_extra_is_refused_at_startup(tmp_path, monkeypatch, tiny_teacher_dir,
                                                                    tiny_sst2_dir):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    argv = distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--export", "onnx")
    with pytest.raises(MissingOnnxExtraError, match=r'needs the onnx extra: pip install -e "\.\[onnx\]"'):
        run_distill.main(argv)
    assert not (tmp_path / "out").exists()  # refused before anything is written
    check_export_arguments(ExportArguments(), adapter_only=False)  # without `--export` the extra is not needed
