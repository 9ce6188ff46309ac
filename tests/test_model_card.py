"""Hub-ready students: the model card, loading every student type without hf_distill, what `--push_to_hub` uploads,
and the scripts' user surface (`--help`, the YAML examples)."""

import json
import os
import sys
import textwrap

import pytest
import torch
import transformers
import yaml
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_tokenizer, run_without_hf_distill
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file

from hf_distill import DistillationConfig, DistillationTrainer, get_task
from hf_distill.model_card import MODEL_CARD_TAG, is_distillation_card, render_model_card
from hf_distill.students import build_bilstm_student, build_sps_student, build_student_from_teacher

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402

SENTENCES = ["the movie was great fun", "a boring , dull film", "not good"]
ROWS = [
    {"model": "teacher", "accuracy": 0.9, "parameters (M)": 0.0333, "size on disk (MB)": 0.13,
     "latency / batch of 8×64 (ms)": 2.0, "speed-up": 1.0},
    {"model": "student", "accuracy": 0.85, "parameters (M)": 0.0198, "size on disk (MB)": 0.08,
     "latency / batch of 8×64 (ms)": 1.0, "speed-up": 2.0},
]
STUDENT_TYPES = {"truncated": "kd", "sps": "peakd", "bilstm": "bilstm"}


def build(kind: str, teacher, tokenizer):
    if kind == "truncated":
        return build_student_from_teacher(teacher, num_layers=2)
    if kind == "sps":
        return build_sps_student(teacher, num_layers=2)
    torch.manual_seed(0)
    return build_bilstm_student(tokenizer, num_labels=2, is_pair=False, teacher=teacher, embedding_dim=16,
                                hidden_size=8, fc_hidden_size=12, dropout=0.0)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def saved_students(tmp_path_factory):
    """Each student type saved with its tokenizer and card, its in-process logits, and what a fresh Python process
    without hf_distill makes of the folder (one process for all three, to keep the test fast)."""
    root = tmp_path_factory.mktemp("hub")
    teacher, tokenizer = make_tiny_bert(seed=0), make_tiny_tokenizer()
    teacher.config.id2label, teacher.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    expected, cards = {}, {}
    for kind, method in STUDENT_TYPES.items():
        student = build(kind, teacher, tokenizer).eval()
        folder = root / kind
        args = DistillationConfig(output_dir=str(folder), method=method, report_to="none", use_cpu=True)
        # Rendered before saving: the card must know a custom student before `save_pretrained` writes `auto_map`.
        cards[kind] = render_model_card(student=student, teacher="org/bert-sst2", args=args, task=get_task("sst2"),
                                        summary_rows=ROWS, dataset="nyu-mll/glue")
        student.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(cards[kind], encoding="utf-8")
        with torch.no_grad():
            expected[kind] = student(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits.tolist()

    script = textwrap.dedent(f"""
        import json
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
        sentences = {SENTENCES!r}
        report = {{}}
        for kind in {list(STUDENT_TYPES)!r}:
            model = AutoModelForSequenceClassification.from_pretrained(kind, trust_remote_code=True).eval()
            tokenizer = AutoTokenizer.from_pretrained(kind)
            logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits.tolist()
            classifier = pipeline("text-classification", model=kind, trust_remote_code=True, device="cpu")
            scores = classifier(sentences, top_k=None, function_to_apply="none")
            labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
            by_label = [[{{s["label"]: s["score"] for s in row}}[label] for label in labels] for row in scores]
            report[kind] = {{"logits": logits, "pipeline": by_label, "module": type(model).__module__}}
        print()  # the JSON report is the last line, after anything the libraries print
        print(json.dumps(report))
    """)
    result = run_without_hf_distill(script, root)
    return root, expected, cards, json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("kind", list(STUDENT_TYPES))
def test_student_loads_without_hf_distill(saved_students, kind):
    _, expected, _, report = saved_students
    loaded = report[kind]
    torch.testing.assert_close(torch.tensor(loaded["logits"]), torch.tensor(expected[kind]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(loaded["pipeline"]), torch.tensor(expected[kind]), atol=1e-5, rtol=1e-5)
    # Custom students run the code saved next to their weights; the truncated one is a stock transformers class.
    stock = loaded["module"].startswith("transformers.models.bert.")
    assert stock == (kind == "truncated"), loaded["module"]


@pytest.mark.parametrize("kind", list(STUDENT_TYPES))
def test_card_metadata(saved_students, kind):
    root, _, cards, _ = saved_students
    metadata = front_matter(cards[kind])
    method = STUDENT_TYPES[kind]
    assert metadata["base_model"] == "org/bert-sst2"
    assert metadata["datasets"] == ["nyu-mll/glue"]
    assert metadata["metrics"] == ["accuracy"]
    assert metadata["pipeline_tag"] == "text-classification" and metadata["library_name"] == "transformers"
    assert metadata["tags"][:2] == ["distillation", method] and MODEL_CARD_TAG in metadata["tags"]
    assert ("custom_code" in metadata["tags"]) == (kind != "truncated")
    result = metadata["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "GLUE SST2", "type": "nyu-mll/glue", "config": "sst2", "split": "validation"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.85}]
    assert is_distillation_card(root / kind / "README.md")
    body = cards[kind]
    assert f"distilled with `{method}`" in body and "[org/bert-sst2](https://huggingface.co/org/bert-sst2)" in body
    assert "| `alpha` |" in body and "2× in batch latency" in body
    assert ("trust_remote_code=True" in body) == (kind != "truncated")


def test_card_of_a_local_teacher_and_own_files_omits_hub_ids(tmp_path, tiny_teacher):
    args = DistillationConfig(output_dir=str(tmp_path / "run"), method="pkd", report_to="none", use_cpu=True)
    student = build_student_from_teacher(tiny_teacher, num_layers=2)
    card = render_model_card(student=student, teacher=str(tmp_path), args=args, task=get_task("sst2"),
                             summary_rows=ROWS)
    metadata = front_matter(card)
    assert "base_model" not in metadata and "datasets" not in metadata and "model-index" not in metadata
    assert f"`{tmp_path}`" in card and "# run" in card
    with_id = front_matter(render_model_card(student=student, teacher=str(tmp_path), args=args, task=get_task("sst2"),
                                             summary_rows=ROWS, base_model="org/teacher"))
    assert with_id["base_model"] == "org/teacher"
    assert "| `beta` | `500.0` |" in card  # the preset that the run really used
    assert "tinybert_" not in card and "| `teacher_cache` |" not in card  # other methods' and unset settings


class FakeHub:
    """Stands in for `huggingface_hub.HfApi`: records what `Trainer.push_to_hub` would upload."""

    def __init__(self):
        self.uploads = []

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, folder_path, ignore_patterns, **kwargs):
        files = sorted(
            os.path.relpath(os.path.join(directory, name), folder_path)
            for directory, _, names in os.walk(folder_path)
            for name in names
        )
        uploaded = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        readme = os.path.join(folder_path, "README.md")
        card = open(readme, encoding="utf-8").read() if os.path.isfile(readme) else None
        self.uploads.append({"folder": folder_path, "files": set(uploaded), "readme": card, **kwargs})
        return type("Future", (), {"done": lambda self: True})()  # checkpoint pushes run as futures


STUDENT_FILES = {
    "README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_args.bin",
    "all_results.json", "train_results.json", "eval_results.json", "teacher_results.json", "trainer_state.json",
    "distillation_config.json", "summary.md",
}  # the completion marker is written after the upload, never uploaded
PUSHED_RUNS = {
    "pkd": ["--student_layers", "2", "--teacher_cache", "{tmp}/cache"],
    "tinybert": ["--student_config", '{{"num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 20}}'],
}


@pytest.mark.parametrize(
    "method",
    [
        "pkd",
        "tinybert",
    ],
)
def test_push_to_hub_uploads_only_the_student_and_our_card(
    method, tmp_path, monkeypatch, tiny_teacher_dir, tiny_sst2_dir
):
    hub = FakeHub()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    output = tmp_path / "student"
    metrics = run_distill.main([
        "--method", method, *[arg.format(tmp=tmp_path) for arg in PUSHED_RUNS[method]], "--teacher_model_name_or_path",
        str(tiny_teacher_dir), "--teacher_hub_id", "org/teacher", "--task_name", "sst2", "--data_dir",
        str(tiny_sst2_dir), "--max_steps", "2", "--output_dir", str(output), "--push_to_hub", "--hub_model_id",
        f"me/tiny-{method}", "--max_seq_length", "32", "--report_to", "none", "--save_strategy", "steps",
        "--save_steps", "1", "--use_cpu", "true",
    ])
    # Checkpoint pushes (hub_strategy every_save) upload the student so far; only the last one has the card.
    assert all(upload["folder"] == str(output) for upload in hub.uploads)
    assert all(upload["repo_id"] == f"me/tiny-{method}" for upload in hub.uploads)
    assert all(upload["files"] <= STUDENT_FILES for upload in hub.uploads)
    final = hub.uploads[-1]
    assert final["files"] == STUDENT_FILES and final["commit_message"] == "End of training"
    saved = load_file(output / "model.safetensors")
    assert set(saved) == set(make_tiny_bert(num_hidden_layers=2).state_dict())  # no teacher, no projections

    card = final["readme"]
    assert card == (output / "README.md").read_text() and is_distillation_card(output / "README.md")
    metadata = front_matter(card)
    assert metadata["base_model"] == "org/teacher" and metadata["tags"][:2] == ["distillation", method]
    # No model-index: its results need a Hub dataset id, and this run read local files (`--data_dir`).
    assert f"# me/tiny-{method}" in card and "model-index" not in metadata
    teacher_row, student_row = metrics["summary"]
    assert f"{student_row['speed-up']:.4g}× in batch latency" in card
    assert f"| teacher | {teacher_row['accuracy']:.4g} |" in card
    assert f'pipeline("text-classification", model="me/tiny-{method}")' in card
    # The run read `--data_dir`, not the Hub's GLUE; the settings table holds the method's settings only.
    assert "datasets" not in metadata and "nyu-mll/glue" not in card and f"(`{tiny_sst2_dir}`)" in card
    assert "teacher_cache" not in card and "overwrite_teacher_cache" not in card
    assert ("| `beta` |" in card) == (method == "pkd") and ("| `tinybert_stage1_epochs` |" in card) == (
        method == "tinybert")


def test_trainer_writes_the_distillation_card_from_user_code(tmp_path, tiny_teacher):
    """`trainer.push_to_hub()` from user code calls `create_model_card`: it must write our card, not Trainer's
    generic draft, describing the task from the student's labels and its latest evaluation."""
    from conftest import make_tiny_dataset
    from transformers import DataCollatorWithPadding

    args = DistillationConfig(output_dir=str(tmp_path), method="pkd", report_to="none", use_cpu=True, max_steps=1,
                              hub_model_id="me/tiny-pkd")
    tiny_teacher.config.id2label, tiny_teacher.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0,
                                                                                                  "positive": 1}
    student = build_student_from_teacher(tiny_teacher, num_layers=2)
    data = make_tiny_dataset(8)
    trainer = DistillationTrainer(model=student, teacher_model=tiny_teacher, args=args, eval_dataset=data,
                                  data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
                                  compute_metrics=lambda p: {"accuracy": 0.625})
    trainer.evaluate()
    trainer.create_model_card(model_name="tiny-pkd", finetuned_from="org/teacher", tags=["my-tag"])
    card = (tmp_path / "README.md").read_text()
    assert is_distillation_card(tmp_path / "README.md")
    metadata = front_matter(card)
    assert metadata["base_model"] == "org/teacher" and "my-tag" in metadata["tags"]
    assert "# me/tiny-pkd" in card and "| `beta` | `500.0` |" in card and "scores accuracy 0.625" in card
    assert "Patient KD" in card and "The teacher was not evaluated in this run" in card

    # With the details run_distill.py adds, the card is the script's own.
    trainer.model_card_details.update(teacher="org/teacher", task=get_task("sst2"), summary_rows=ROWS,
                                      dataset="nyu-mll/glue")
    trainer.create_model_card()
    assert (tmp_path / "README.md").read_text() == render_model_card(
        student=trainer.model, teacher="org/teacher", args=args, task=get_task("sst2"), summary_rows=ROWS,
        dataset="nyu-mll/glue")


# -- the scripts' user surface ---------------------------------------------------------------------------------------


def argument_classes(example):
    return run_glue_teacher.ARGUMENT_CLASSES if example.name.startswith("teacher") else run_distill.ARGUMENT_CLASSES


@pytest.mark.parametrize("example", sorted((REPO_ROOT / "examples").glob("*.yaml")), ids=lambda path: path.name)
def test_example_configs_parse(example):
    from hf_distill.cli import parse_arguments

    parsed = parse_arguments(argument_classes(example), [str(example)])
    training_args = parsed[-1]
    settings = yaml.safe_load(example.read_text())
    assert training_args.output_dir == settings["output_dir"]
    if not example.name.startswith("teacher"):
        assert example.name.startswith(training_args.method + "_")
        assert training_args.effective_distillation_config()["method"] == settings["method"]


@pytest.mark.parametrize(
    ("script", "groups"),
    [(run_distill, ["Teacher:", "LoRA (PEFT):", "Data:"]), (run_glue_teacher, ["Model:", "LoRA (PEFT):", "Data:"])],
    ids=["run_distill", "run_glue_teacher"],
)
def test_help_is_grouped_and_every_option_explained(script, groups, capsys):
    with pytest.raises(SystemExit):
        script.main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    assert all(group in lines for group in groups)
    parser = transformers.HfArgumentParser(script.ARGUMENT_CLASSES)
    missing = [action.dest for action in parser._actions if not action.help and action.dest != "help"]
    assert not missing, f"options without help: {missing}"
