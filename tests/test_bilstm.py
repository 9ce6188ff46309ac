"""BiLSTM student (Tang et al. 2019): shapes, pooling, padding invariance, pair features, remote-code round trip,
embedding initialisation and errors."""

import json

import pytest
import torch
from conftest import run_without_hf_distill
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_distill.students.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, build_bilstm_student
from hf_distill.students.bilstm.modeling_bilstm import pool_lstm_outputs

SMALL = dict(embedding_dim=16, hidden_size=8, fc_hidden_size=12, dropout=0.0)
SENTENCES = ["the movie was great fun", "a boring , dull film", "bad"]
PAIRS = (["the market rose", "he said", "she loved the film"], ["stock price fell", "not funny", "people said so"])


def make_student(tokenizer, *, is_pair=False, num_labels=2, seed=0, **overrides):
    torch.manual_seed(seed)
    return build_bilstm_student(tokenizer, num_labels=num_labels, is_pair=is_pair, **{**SMALL, **overrides}).eval()


def expected_parameter_count(vocab, embedding_dim, hidden, fc_hidden, num_labels, is_pair):
    lstm_per_direction = 4 * hidden * embedding_dim + 4 * hidden * hidden + 2 * 4 * hidden  # W_ih, W_hh, b_ih, b_hh
    features = 2 * hidden * (4 if is_pair else 1)
    head = features * fc_hidden + fc_hidden + fc_hidden * num_labels + num_labels
    return vocab * embedding_dim + 2 * lstm_per_direction + head


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_single_forward_shapes_and_loss(tiny_tokenizer, pooling):
    student = make_student(tiny_tokenizer, num_labels=3, pooling=pooling)
    batch = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    labels = torch.tensor([0, 2, 1])
    out = student(**batch, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (3, 3)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    embeds, lstm_out = out.hidden_states
    length = batch["input_ids"].shape[1]
    assert embeds.shape == (3, length, 16) and lstm_out.shape == (3, length, 2 * 8)
    padding = batch["attention_mask"] == 0
    assert padding.any() and (lstm_out[padding] == 0).all()

    loss, logits = student(**batch, labels=labels, return_dict=False)
    torch.testing.assert_close(logits, out.logits)


def test_pooling_matches_manual_lstm(tiny_tokenizer):
    """Each pooling mode against an unpacked LSTM run on the unpadded sentence alone."""
    batch = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    n = int(batch["attention_mask"][2].sum())
    pooled = {}
    for pooling in ("last", "max", "mean"):
        student = make_student(tiny_tokenizer, pooling=pooling)
        with torch.no_grad():
            pooled[pooling], _ = student.encode(batch["input_ids"], batch["attention_mask"].bool())
            outputs, (h_n, _) = student.lstm(student.embeddings(batch["input_ids"][2:3, :n]))
        hidden = student.config.hidden_size
        expected = {
            "last": torch.cat([outputs[0, -1, :hidden], outputs[0, 0, hidden:]]),
            "max": outputs[0].max(dim=0).values,
            "mean": outputs[0].mean(dim=0),
        }[pooling]
        torch.testing.assert_close(pooled[pooling][2], expected)
    assert not torch.allclose(pooled["last"], pooled["max"]) and not torch.allclose(pooled["max"], pooled["mean"])


@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
@pytest.mark.parametrize("is_pair", [False, True])
def test_padding_never_changes_logits(tiny_tokenizer, pooling, is_pair):
    student = make_student(tiny_tokenizer, is_pair=is_pair, pooling=pooling)
    texts = PAIRS if is_pair else (SENTENCES,)
    alone = tiny_tokenizer(*(t[:1] for t in texts), return_tensors="pt")
    right = tiny_tokenizer(*texts, padding="max_length", max_length=24, return_tensors="pt")
    tiny_tokenizer.padding_side = "left"
    left = tiny_tokenizer(*texts, padding="max_length", max_length=24, return_tensors="pt")
    tiny_tokenizer.padding_side = "right"
    with torch.no_grad():
        reference = student(**alone).logits[0]
        torch.testing.assert_close(student(**right).logits[0], reference, rtol=0, atol=1e-6)
        torch.testing.assert_close(student(**left).logits[0], reference, rtol=0, atol=1e-6)


def test_pair_features_equal_hand_computation(tiny_tokenizer):
    student = make_student(tiny_tokenizer, is_pair=True)
    batch = tiny_tokenizer(*PAIRS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = student(**batch).logits
        for row in range(len(PAIRS[0])):
            ids, mask, types = (batch[k][row] for k in ("input_ids", "attention_mask", "token_type_ids"))
            part_a = ids[(mask == 1) & (types == 0)]
            part_b = ids[(mask == 1) & (types == 1)]
            assert tiny_tokenizer.convert_ids_to_tokens(part_a.tolist())[0] == "[CLS]"
            assert tiny_tokenizer.convert_ids_to_tokens(part_b.tolist())[-1] == "[SEP]"
            vectors = []
            for part in (part_a, part_b):
                _, (h_n, _) = student.lstm(student.embeddings(part[None]))
                vectors.append(torch.cat([h_n[0, 0], h_n[1, 0]]))
            h1, h2 = vectors
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()])
            expected = student.classifier(torch.relu(student.fc(features)))
            torch.testing.assert_close(logits[row], expected)


def test_regression_uses_mse(tiny_tokenizer):
    student = make_student(tiny_tokenizer, num_labels=1)
    batch = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    labels = torch.tensor([0.5, 3.0, 4.5])
    out = student(**batch, labels=labels)
    assert student.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, ((out.logits.squeeze(-1) - labels) ** 2).mean())


def test_training_step_reduces_loss(tiny_tokenizer):
    student = make_student(tiny_tokenizer, is_pair=True).train()
    batch = tiny_tokenizer(*PAIRS, padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 1])
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = student(**batch, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]
    pad_row = student.embeddings.weight[tiny_tokenizer.pad_token_id]
    assert (pad_row == 0).all()


# ---------------------------------------------------------------- parameters and initialisation


@pytest.mark.parametrize("is_pair", [False, True])
def test_parameter_count_formula(tiny_tokenizer, is_pair):
    student = make_student(tiny_tokenizer, is_pair=is_pair, num_labels=3)
    expected = expected_parameter_count(len(tiny_tokenizer), 16, 8, 12, 3, is_pair)
    assert student.num_parameters() == expected


def test_paper_sizes_are_about_one_million_parameters_besides_embeddings():
    for is_pair, low, high in ((False, 0.6e6, 0.7e6), (True, 0.95e6, 1.1e6)):
        model = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=1, num_labels=2, is_pair=is_pair))
        assert model.num_parameters() == expected_parameter_count(1, 300, 150, 400, 2, is_pair)
        assert low < model.num_parameters() - 300 < high


def test_init_weights(tiny_tokenizer):
    student = make_student(tiny_tokenizer, hidden_size=8)
    assert (student.embeddings.weight[tiny_tokenizer.pad_token_id] == 0).all()
    bias_ih = student.lstm.bias_ih_l0
    assert (bias_ih[8:16] == 1).all() and (bias_ih[:8] == 0).all() and (bias_ih[16:] == 0).all()
    std = student.embeddings.weight[5:].std().item()
    assert 0.05 < std < 0.2  # initializer_range 0.1


def test_embedding_init_from_teacher(tiny_tokenizer, tiny_teacher):
    tiny_teacher.config.id2label = {0: "negative", 1: "positive"}
    tiny_teacher.config.label2id = {"negative": 0, "positive": 1}
    student = build_bilstm_student(
        tiny_tokenizer, num_labels=2, is_pair=False, teacher=tiny_teacher, embedding_init="teacher", hidden_size=8
    )
    teacher_rows = tiny_teacher.get_input_embeddings().weight
    assert student.config.embedding_dim == 32 and student.config.embedding_init == "teacher"
    torch.testing.assert_close(student.embeddings.weight, teacher_rows, rtol=0, atol=0)
    assert student.embeddings.weight.data_ptr() != teacher_rows.data_ptr()
    assert student.config.id2label == {0: "negative", 1: "positive"}


def test_embedding_init_from_glove_file(tmp_path, tiny_tokenizer):
    glove = tmp_path / "vectors.txt"
    rows = {"movie": [0.5, -1.0, 2.0, 0.25], "Good": [1.0, 2.0, 3.0, 4.0], "zebra": [9.0, 9.0, 9.0, 9.0]}
    glove.write_text("3 4\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()), encoding="utf-8")
    torch.manual_seed(0)
    random_student = build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, embedding_dim=4, hidden_size=8)
    torch.manual_seed(0)
    student = build_bilstm_student(
        tiny_tokenizer,
        num_labels=2,
        is_pair=False,
        embedding_init="file",
        embedding_file=glove,
        embedding_dim=4,
        hidden_size=8,
    )
    vocab = tiny_tokenizer.get_vocab()
    weight = student.embeddings.weight
    torch.testing.assert_close(weight[vocab["movie"]], torch.tensor(rows["movie"]))
    # "good" is not in the file: it stays random ("Good" would only match a cased token "Good")
    torch.testing.assert_close(weight[vocab["good"]], random_student.embeddings.weight[vocab["good"]])
    changed = (weight != random_student.embeddings.weight).any(dim=1).nonzero().flatten().tolist()
    assert changed == [vocab["movie"]]
    assert student.config.embedding_init == f"file:{glove}"


def test_embedding_file_errors(tmp_path, tiny_tokenizer):
    glove = tmp_path / "vectors.txt"
    glove.write_text("movie 0.1 0.2 0.3\n", encoding="utf-8")
    build = dict(num_labels=2, is_pair=False, embedding_init="file", hidden_size=8)
    with pytest.raises(ValueError, match=r"`embedding_file`.*3-d.*`embedding_dim` is 300"):
        build_bilstm_student(tiny_tokenizer, embedding_file=glove, **build)
    with pytest.raises(ValueError, match=r"`embedding_file`.*not a file"):
        build_bilstm_student(tiny_tokenizer, embedding_file=tmp_path / "missing.txt", **build)
    with pytest.raises(ValueError, match=r"`embedding_file`.*`embedding_init='file'`"):
        build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, embedding_file=glove)


def test_builder_errors(tiny_tokenizer, tiny_teacher):
    with pytest.raises(ValueError, match="`embedding_init` is 'glove'"):
        build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, embedding_init="glove")
    with pytest.raises(ValueError, match="`teacher` is None"):
        build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, embedding_init="teacher")
    with pytest.raises(ValueError, match=r"`embedding_dim` is 16.*32-d"):
        build_bilstm_student(
            tiny_tokenizer, num_labels=2, is_pair=False, teacher=tiny_teacher, embedding_init="teacher",
            embedding_dim=16,
        )
    with pytest.raises(ValueError, match="`vocab_size` is 7"):
        build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, vocab_size=7)
    with pytest.raises(ValueError, match="`pooling` is 'cls'"):
        build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, pooling="cls")
    with pytest.raises(ValueError, match="`dropout` is 1.5"):
        BiLSTMConfig(dropout=1.5)
    with pytest.raises(ValueError, match="`hidden_size` is 0"):
        BiLSTMConfig(hidden_size=0)


def test_pair_mode_input_errors(tiny_tokenizer):
    student = make_student(tiny_tokenizer, is_pair=True)
    pair = tiny_tokenizer(*PAIRS, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="`token_type_ids` is None"):
        student(input_ids=pair["input_ids"], attention_mask=pair["attention_mask"])
    single = tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"sentence B empty in batch rows \[0, 1, 2\]"):
        student(**single)


def test_pool_lstm_outputs_ignores_padding():
    outputs = torch.tensor([[[1.0, -2.0], [3.0, -4.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(pool_lstm_outputs(outputs, None, mask, "max"), torch.tensor([[3.0, -2.0]]))
    torch.testing.assert_close(pool_lstm_outputs(outputs, None, mask, "mean"), torch.tensor([[2.0, -3.0]]))


# ---------------------------------------------------------------- save / load


def test_save_writes_auto_map_and_code(tmp_path, tiny_tokenizer):
    student = make_student(tiny_tokenizer)
    student.save_pretrained(tmp_path / "student")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["model_type"] == "hf_distill_bilstm"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_bilstm.BiLSTMConfig",
        "AutoModelForSequenceClassification": "modeling_bilstm.BiLSTMForSequenceClassification",
    }
    assert (tmp_path / "student" / "modeling_bilstm.py").is_file()
    assert (tmp_path / "student" / "configuration_bilstm.py").is_file()


def test_in_process_auto_load(tmp_path, tiny_tokenizer):
    student = make_student(tiny_tokenizer, is_pair=True, pooling="mean")
    student.save_pretrained(tmp_path / "student")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "student"), BiLSTMConfig)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    assert type(loaded) is BiLSTMForSequenceClassification and loaded.config.pooling == "mean"
    batch = tiny_tokenizer(*PAIRS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, student(**batch).logits, rtol=0, atol=0)


REMOTE_LOAD_SCRIPT = """
import torch
from transformers import AutoModelForSequenceClassification

data = torch.load("io.pt")
model = AutoModelForSequenceClassification.from_pretrained("student", trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(**data["inputs"]).logits
torch.save({"logits": logits, "module": type(model).__module__}, "loaded.pt")
"""


def test_remote_code_load_without_hf_distill(tmp_path, tiny_tokenizer):
    student = make_student(tiny_tokenizer, is_pair=True, pooling="max")
    student.save_pretrained(tmp_path / "student")
    inputs = dict(tiny_tokenizer(*PAIRS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected = student(**inputs).logits
    torch.save({"inputs": inputs}, tmp_path / "io.pt")
    run_without_hf_distill(REMOTE_LOAD_SCRIPT, tmp_path)
    loaded = torch.load(tmp_path / "loaded.pt")
    assert loaded["module"].startswith("transformers_modules.")  # the copied file, not this package
    torch.testing.assert_close(loaded["logits"], expected, rtol=0, atol=0)
