"""Token-classification (NER) heads of the custom students: SPS and BiLSTM taggers, their builders, the per-token loss
against a hand computation, and the remote-code round trip with the `token-classification` pipeline."""

import json

import pytest
import torch
from conftest import make_tiny_bert, make_tiny_bert_config, make_tiny_tokenizer, run_without_hf_distill
from transformers import (
    AutoModelForTokenClassification,
    BertForTokenClassification,
)

from hf_distill.students.bilstm import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    BiLSTMForTokenClassification,
    build_bilstm_student,
)
from hf_distill.students.sps import SPSBertForSequenceClassification, SPSBertForTokenClassification, build_sps_student

NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG")
LABEL_CONFIG = dict(
    num_labels=len(NER_LABELS),
    id2label=dict(enumerate(NER_LABELS)),
    label2id={name: i for i, name in enumerate(NER_LABELS)},
)
SENTENCES = ["he sold shares", "the company said the market rose", "she"]
LAYER_PREFIX = "bert.encoder.layer."
SMALL_BILSTM = dict(embedding_dim=16, hidden_size=8, fc_hidden_size=12, dropout=0.0)


def make_bert_tagger(seed: int = 0, **config_kwargs) -> BertForTokenClassification:
    """A tiny random `BertForTokenClassification` with NER labels, its weights (classifier bias included) noised so
    that a wrong copy or a skipped tensor shows."""
    torch.manual_seed(seed)
    teacher = BertForTokenClassification(make_tiny_bert_config(**LABEL_CONFIG, **config_kwargs)).eval()
    with torch.no_grad():
        for param in teacher.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return teacher


def make_sps_tagger() -> SPSBertForTokenClassification:
    return build_sps_student(make_bert_tagger(), num_layers=2).eval()


def make_bilstm_tagger() -> BiLSTMForTokenClassification:
    """A BiLSTM tagger with random embeddings and the NER labels of a BERT tagger teacher, as the factory builds it."""
    teacher = make_bert_tagger()
    torch.manual_seed(0)
    return build_bilstm_student(
        make_tiny_tokenizer(), num_labels=len(NER_LABELS), is_pair=False, teacher=teacher, token_classification=True,
        **SMALL_BILSTM,
    ).eval()


def tagged_batch(padding_side: str = "right") -> dict[str, torch.Tensor]:
    """`SENTENCES` padded, with NER-style labels: -100 at special tokens, padding and one "continuation" piece."""
    tokenizer = make_tiny_tokenizer()
    tokenizer.padding_side = padding_side
    batch = dict(tokenizer(SENTENCES, padding=True, return_special_tokens_mask=True, return_tensors="pt"))
    no_label = batch.pop("special_tokens_mask").bool() | (batch["attention_mask"] == 0)
    labels = torch.randint(0, len(NER_LABELS), no_label.shape, generator=torch.Generator().manual_seed(0))
    labels[no_label] = -100
    labels[1, 3] = -100
    return {**batch, "labels": labels}


def assert_loss_is_ce_over_labelled_positions(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        out = model(**batch)
    labels = batch["labels"]
    assert out.logits.shape == (*labels.shape, len(NER_LABELS))
    labelled = labels != -100
    assert 0 < int(labelled.sum()) < labels.numel()
    # The mean over labelled positions of -log p(gold label).
    log_probs = out.logits[labelled].log_softmax(dim=-1)
    expected = -log_probs.gather(1, labels[labelled].unsqueeze(1)).mean()
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- SPS


def test_sps_tagger_is_built_from_a_token_teacher_and_copies_every_tensor():
    teacher = make_bert_tagger()
    student = build_sps_student(teacher, layer_ids=[1, 3])
    assert type(student) is SPSBertForTokenClassification and student.bert.pooler is None
    assert student.config.id2label == teacher.config.id2label and student.config.label2id == teacher.config.label2id
    assert student.config.distillation_layer_ids == [1, 3]
    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    # The state dict of a 2-layer BERT tagger: no pooler, nothing extra.
    two_layer_tagger = BertForTokenClassification(make_tiny_bert_config(num_hidden_layers=2, **LABEL_CONFIG))
    assert set(student_state) == set(two_layer_tagger.state_dict())
    for key, value in student_state.items():
        if key.startswith(LAYER_PREFIX):
            index, rest = key[len(LAYER_PREFIX) :].split(".", 1)
            key = f"{LAYER_PREFIX}{[1, 3][int(index)]}.{rest}"
        assert torch.equal(value, teacher_state[key]), key
    assert torch.equal(student.classifier.bias, teacher.classifier.bias) and teacher.classifier.bias.abs().sum() > 0


def test_sps_tagger_runs_the_sequence_students_encoder():
    """Same body weights: the tagger's hidden states are the SPS sequence student's (checked against an unrolled
    2k-layer BERT in test_sps.py), and its logits the classifier at every position."""
    tagger_teacher = make_bert_tagger()
    sequence_teacher = make_tiny_bert(0, num_labels=2)
    # The tagger teacher has no pooler: the sequence teacher keeps its own, every other body tensor is replaced.
    missing, unexpected = sequence_teacher.bert.load_state_dict(tagger_teacher.bert.state_dict(), strict=False)
    assert sorted(missing) == ["pooler.dense.bias", "pooler.dense.weight"] and unexpected == []
    tagger = build_sps_student(tagger_teacher, num_layers=2).eval()
    classifier = build_sps_student(sequence_teacher, num_layers=2).eval()
    assert type(classifier) is SPSBertForSequenceClassification
    inputs = {k: v for k, v in tagged_batch().items() if k != "labels"}
    with torch.no_grad():
        tagged = tagger(**inputs, output_hidden_states=True)
        reference = classifier(**inputs, output_hidden_states=True)
    assert len(tagged.hidden_states) == 2 * 2 + 1
    for ours, theirs in zip(tagged.hidden_states, reference.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(tagged.logits, tagger.classifier(tagged.hidden_states[-1]), rtol=0, atol=0)


def test_sps_tagger_loss_is_ce_over_labelled_positions():
    tagger = make_sps_tagger()
    batch = tagged_batch()
    assert_loss_is_ce_over_labelled_positions(tagger, batch)
    with torch.no_grad():
        out = tagger(**batch)
        torch.testing.assert_close(tagger(**batch, return_dict=False), (out.loss, out.logits), rtol=0, atol=0)


def test_sps_refuses_a_teacher_missing_a_student_tensor():
    teacher = make_bert_tagger()
    teacher.classifier = torch.nn.Identity()  # e.g. a head-less body: the student's classifier would stay random
    with pytest.raises(ValueError, match=r"no tensor for the SPS student's classifier.weight, classifier.bias"):
        build_sps_student(teacher, num_layers=1)


# ---------------------------------------------------------------- BiLSTM


def test_bilstm_tagger_logits_are_the_head_on_each_positions_lstm_output():
    """Per row, against an unpacked LSTM run on the unpadded sentence alone, for right and left padding."""
    tagger = make_bilstm_tagger()
    for padding_side in ("right", "left"):
        batch = tagged_batch(padding_side)
        with torch.no_grad():
            out = tagger(**batch, output_hidden_states=True)
            for row, real in enumerate(batch["attention_mask"].bool()):
                outputs, _ = tagger.lstm(tagger.embeddings(batch["input_ids"][row, real][None]))
                expected = tagger.classifier(torch.relu(tagger.fc(outputs[0])))
                torch.testing.assert_close(out.logits[row, real], expected, rtol=0, atol=1e-6)
        embeds, lstm_out = out.hidden_states
        assert embeds.shape[-1] == 16 and lstm_out.shape[-1] == 2 * 8
        assert (lstm_out[batch["attention_mask"] == 0] == 0).all()


def test_bilstm_tagger_loss_is_ce_over_labelled_positions():
    tagger = make_bilstm_tagger()
    assert_loss_is_ce_over_labelled_positions(tagger, tagged_batch())


def test_bilstm_tagger_has_the_sequence_students_layers():
    tagger = make_bilstm_tagger()
    torch.manual_seed(0)
    classifier = build_bilstm_student(make_tiny_tokenizer(), num_labels=len(NER_LABELS), is_pair=False,
                                      **SMALL_BILSTM)
    assert type(classifier) is BiLSTMForSequenceClassification
    shapes = {key: value.shape for key, value in tagger.state_dict().items()}
    assert shapes == {key: value.shape for key, value in classifier.state_dict().items()}


def test_bilstm_builder_copies_teacher_labels_and_refuses_pairs_and_pooling():
    tokenizer = make_tiny_tokenizer()
    teacher = make_bert_tagger()
    build = dict(num_labels=len(NER_LABELS), token_classification=True, hidden_size=8)
    tagger = build_bilstm_student(tokenizer, is_pair=False, teacher=teacher, embedding_init="teacher", **build)
    assert type(tagger) is BiLSTMForTokenClassification and tagger.config.id2label == teacher.config.id2label
    assert build_bilstm_student(tokenizer, is_pair=False, pooling="last", **build).config.pooling == "last"
    with pytest.raises(ValueError, match=r"`is_pair` is True with `token_classification=True`"):
        build_bilstm_student(tokenizer, is_pair=True, **build)
    with pytest.raises(ValueError, match=r"`bilstm_pooling` \(`pooling`\) is 'max'.*Drop `bilstm_pooling`"):
        build_bilstm_student(tokenizer, is_pair=False, pooling="max", **build)
    with pytest.raises(ValueError, match=r"`is_pair` is True, but BiLSTMForTokenClassification"):
        BiLSTMForTokenClassification(BiLSTMConfig(vocab_size=10, is_pair=True))


# ---------------------------------------------------------------- save / load without hf_distill


REMOTE_TAGGER = """
import json, torch
from transformers import AutoModelForTokenClassification, pipeline

model = AutoModelForTokenClassification.from_pretrained("tagger", trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(**torch.load("inputs.pt")).logits
torch.save({"logits": logits, "module": type(model).__module__}, "loaded.pt")
tagger = pipeline("token-classification", model="tagger", aggregation_strategy="simple", trust_remote_code=True)
entities = tagger("he sold shares")
assert isinstance(entities, list) and all("entity_group" in entity for entity in entities), entities
with open("entities.json", "w") as file:
    json.dump(entities, file, default=float)
"""

AUTO_MAPS = {
    "sps": {"AutoConfig": "configuration_sps.SPSBertConfig",
            "AutoModelForTokenClassification": "modeling_sps.SPSBertForTokenClassification"},
    "bilstm": {"AutoConfig": "configuration_bilstm.BiLSTMConfig",
               "AutoModelForTokenClassification": "modeling_bilstm.BiLSTMForTokenClassification"},
}


@pytest.mark.parametrize("kind, make_tagger", [("sps", make_sps_tagger), ("bilstm", make_bilstm_tagger)])
def test_saved_tagger_loads_and_tags_without_hf_distill(tmp_path, kind, make_tagger):
    tagger = make_tagger()
    # B-PER wins at every position, so the pipeline's entity grouping has entities to return.
    with torch.no_grad():
        tagger.classifier.bias[NER_LABELS.index("B-PER")] += 100.0
    path = tmp_path / "tagger"
    tagger.save_pretrained(path)
    make_tiny_tokenizer().save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["auto_map"] == AUTO_MAPS[kind]
    in_process = AutoModelForTokenClassification.from_pretrained(path).eval()
    assert type(in_process) is type(tagger)

    inputs = {k: v for k, v in tagged_batch().items() if k != "labels"}
    torch.save(inputs, tmp_path / "inputs.pt")
    run_without_hf_distill(REMOTE_TAGGER, tmp_path)
    loaded = torch.load(tmp_path / "loaded.pt")
    assert loaded["module"].startswith("transformers_modules.")  # the copied file, not this package
    with torch.no_grad():
        reloaded = in_process(**inputs).logits
        # Both processes read the weights from the same file offsets, so the copied code must agree bitwise. Against
        # the in-memory model only to rounding: loaded tensors can sit at unaligned addresses (safetensors offsets),
        # where the CPU's LSTM kernels take another vectorised path (~1e-8 here).
        torch.testing.assert_close(loaded["logits"], reloaded, rtol=0, atol=0)
        torch.testing.assert_close(reloaded, tagger(**inputs).logits, rtol=0, atol=1e-6)
    entities = json.loads((tmp_path / "entities.json").read_text())
    # Every word a B-PER: each starts its own PER entity.
    assert [(entity["entity_group"], entity["word"]) for entity in entities] == [("PER", "he"), ("PER", "sold"),
                                                                                  ("PER", "shares")]
