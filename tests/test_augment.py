"""TinyBERT data augmentation (Algorithm 1), the dataset driver and the `python -m hf_distill.augment` CLI."""

import json
import random
from collections import defaultdict

import datasets
import pytest
import torch
from conftest import SPECIAL_TOKENS, SST2_ROWS, TINY_VOCAB, make_tiny_bert_config, make_tiny_tokenizer
from transformers import BertForMaskedLM, BertModel

from hf_distill import augment as augment_cli
from hf_distill.data import load_task_dataset
from hf_distill.data.augment_tinybert import DEFAULT_STOPWORDS, TinyBertAugmenter, WordEmbeddings, load_masked_lm
from hf_distill.data.augmentation import Augmenter, augment_dataset

# Ranking forced onto the MLM's output bias: "##s" and "[MASK]" must be skipped, and each word loses itself.
RIGGED_RANKING = ["good", "##s", "[MASK]", "bad", "movie", "great", "fun", "dull", "poor", "new"]
GLOVE_ROWS = {
    "movies": [1.0, 0.0, 0.0],
    "films": [0.9, 0.1, 0.0],
    "pictures": [0.7, 0.3, 0.0],
    "shows": [0.5, 0.5, 0.1],
    "cars": [0.0, 1.0, 0.0],
    "trucks": [0.1, 0.9, 0.2],
}


def make_tiny_mlm(seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM(make_tiny_bert_config()).eval()


def rig(model: BertForMaskedLM, ranking: list[str]) -> BertForMaskedLM:
    """Make the MLM's top predictions `ranking`, in that order, at every position (gaps of 50 logits dwarf the
    hidden-state term, which stays below ~1 for a random hidden-32 model)."""
    vocab = {token: i for i, token in enumerate(TINY_VOCAB)}
    with torch.no_grad():
        bias = model.get_output_embeddings().bias
        bias.zero_()
        for rank, token in enumerate(ranking):
            bias[vocab[token]] = 1000.0 - 50.0 * rank
    return model


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "glove.3d.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in GLOVE_ROWS.items()), encoding="utf-8")
    return path


@pytest.fixture
def glove(glove_file):
    return WordEmbeddings.from_glove(glove_file)


@pytest.fixture
def rigged_augmenter(tiny_tokenizer, glove):
    return TinyBertAugmenter(rig(make_tiny_mlm(), RIGGED_RANKING), tiny_tokenizer, word_embeddings=glove, top_k=3)


@pytest.fixture
def sst2_dataset():
    sentences, labels = zip(*SST2_ROWS, strict=True)
    return datasets.Dataset.from_dict({"sentence": list(sentences), "label": list(labels), "idx": list(range(8))})


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda module, args, kwargs, output: calls.append(kwargs), with_kwargs=True)
    return calls


# ----------------------------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------------------------


def test_single_piece_words_take_mlm_top_k_without_pieces_specials_or_the_word_itself(rigged_augmenter):
    words = "the movie was great fun".split()
    assert rigged_augmenter.candidates(words) == {
        1: ["good", "bad", "great"],  # "movie" loses itself
        3: ["good", "bad", "movie"],
        4: ["good", "bad", "movie"],
    }


def test_mlm_sees_cls_masked_sep_original_sep_with_segments(tiny_tokenizer, glove):
    model = make_tiny_mlm()
    calls = count_forwards(model)
    TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove).candidates("the movie was great".split())
    ids = tiny_tokenizer.convert_tokens_to_ids
    sentence = ids("the movie was great".split())
    masked = ids("the [MASK] was great".split())
    expected_movie = [ids("[CLS]"), *masked, ids("[SEP]"), *sentence, ids("[SEP]")]
    assert len(calls) == 1
    assert calls[0]["input_ids"][0].tolist() == expected_movie
    assert calls[0]["input_ids"][1].tolist()[4] == ids("[MASK]")  # second row masks "great"
    assert calls[0]["token_type_ids"][0].tolist() == [0] * 6 + [1] * 5


def test_all_maskable_words_of_a_sentence_share_one_forward(tiny_tokenizer, glove):
    model = make_tiny_mlm()
    calls = count_forwards(model)
    augmenter = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove, n_aug=4)
    for sentence, _ in SST2_ROWS:
        augmenter.augment(sentence, random.Random(0))
    assert len(calls) == len(SST2_ROWS)
    assert max(len(call["input_ids"]) for call in calls) == 3  # "the movie was great fun": 3 masked copies

    per_word = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove, batch_size=1)
    calls.clear()
    words = "the movie was great fun".split()
    assert per_word.candidates(words) == augmenter.candidates(words)  # batching changes no prediction
    assert len(calls) == 1 + 3


def test_augment_batch_runs_many_sentences_copies_per_forward_sorted_and_padded(tiny_tokenizer, glove):
    # A random (unrigged) MLM, so the check that batching across sentences keeps every prediction is not trivial.
    model = make_tiny_mlm(seed=3)
    calls = count_forwards(model)
    texts = [sentence for sentence, _ in SST2_ROWS]
    one_at_a_time = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove, n_aug=6)
    expected = [one_at_a_time.augment(text, random.Random(i)) for i, text in enumerate(texts)]
    copies = sum(len(call["input_ids"]) for call in calls)
    calls.clear()

    for batch_size, forwards in ((64, 1), (3, -(-copies // 3))):
        augmenter = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove, n_aug=6, batch_size=batch_size)
        assert augmenter.augment_batch(texts, [random.Random(i) for i in range(len(texts))]) == expected
        assert len(calls) == forwards and sum(len(call["input_ids"]) for call in calls) == copies
        lengths = [length for call in calls for length in call["attention_mask"].sum(dim=1).tolist()]
        assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 1  # longest first, across sentences
        for call in calls:  # each forward is as wide as its longest copy; shorter ones are padded and masked out
            assert call["input_ids"].shape[1] == call["attention_mask"].sum(dim=1).max()
            assert (call["input_ids"][call["attention_mask"] == 0] == tiny_tokenizer.pad_token_id).all()
        calls.clear()


def test_multi_piece_words_take_embedding_neighbours(rigged_augmenter, tiny_tokenizer):
    assert tiny_tokenizer.tokenize("movies") == ["movie", "##s"]
    candidates = rigged_augmenter.candidates("the movies were great , actors".split())
    assert candidates[1] == ["films", "pictures", "shows"]  # nearest by cosine, not the MLM's ranking
    assert candidates[3] == ["good", "bad", "movie"]
    assert 5 not in candidates  # "actors": several pieces, no GloVe row -> no candidates
    assert 0 not in candidates and 2 not in candidates and 4 not in candidates  # stop words and ","


# ----------------------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------------------


def test_only_eligible_words_change_and_variants_are_new_and_unique(tiny_tokenizer, glove):
    augmenter = TinyBertAugmenter(make_tiny_mlm(), tiny_tokenizer, word_embeddings=glove, p_t=1.0, n_aug=10)
    text = "The movie , and a great film2 !"
    words = augmenter.basic_tokenizer.tokenize(text)
    assert words == ["the", "movie", ",", "and", "a", "great", "film2", "!"]
    candidates = augmenter.candidates(words)
    assert sorted(candidates) == [1, 5]
    variants = augmenter.augment(text, random.Random(3))
    assert 1 <= len(variants) <= 10 and len(set(variants)) == len(variants)
    assert " ".join(words) not in variants
    for variant in variants:
        new = variant.split()
        kept = [i for i in range(len(words)) if i not in candidates]
        assert [new[i] for i in kept] == [words[i] for i in kept]
        assert all(new[i] in candidates[i] for i in candidates)  # p_t = 1 replaces every candidate word


def test_p_t_zero_or_no_candidates_gives_no_variants(tiny_tokenizer, glove):
    model = make_tiny_mlm()
    never = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove, p_t=0.0)
    assert never.augment("great fun", random.Random(0)) == []
    augmenter = TinyBertAugmenter(model, tiny_tokenizer, word_embeddings=glove)
    assert augmenter.augment("it is what it was , !", random.Random(0)) == []
    assert {"the", "not", "very", "is"} <= DEFAULT_STOPWORDS


def test_same_rng_same_variants(rigged_augmenter):
    text = "the movie was great fun"
    first = rigged_augmenter.augment(text, random.Random(7))
    assert first == rigged_augmenter.augment(text, random.Random(7))
    assert first != rigged_augmenter.augment(text, random.Random(8))
    assert isinstance(rigged_augmenter, Augmenter)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"p_t": 1.5}, "`p_t`"), ({"p_t": -0.1}, "`p_t`"), ({"top_k": 0}, "`top_k`"), ({"n_aug": 0}, "`n_aug`")],
)
def test_invalid_settings_raise(tiny_tokenizer, glove, kwargs, name):
    with pytest.raises(ValueError, match=name):
        TinyBertAugmenter(make_tiny_mlm(), tiny_tokenizer, word_embeddings=glove, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Word embeddings
# ----------------------------------------------------------------------------------------------------------------


def test_glove_nearest_by_cosine_and_max_words(glove_file, glove):
    assert glove.nearest("cars", 2) == ["trucks", "shows"]
    assert glove.nearest("movies", 10) == ["films", "pictures", "shows", "trucks", "cars"]  # never itself
    assert glove.nearest("unknown", 3) == []
    assert WordEmbeddings.from_glove(glove_file, max_words=2).words == ["movies", "films"]


def test_glove_errors(tmp_path):
    with pytest.raises(ValueError, match="`glove_file`"):
        WordEmbeddings.from_glove(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\nbad 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        WordEmbeddings.from_glove(bad)


def brute_force_nearest(matrix: torch.Tensor, names: list[str], query: torch.Tensor, k: int, skip: str) -> list[str]:
    scored = [(torch.cosine_similarity(query, matrix[i], dim=0).item(), n) for i, n in enumerate(names) if n != skip]
    return [name for _, name in sorted(scored, reverse=True)[:k]]


def test_fallback_embeddings_from_mlm_input_embeddings(tiny_tokenizer):
    model = make_tiny_mlm()
    fallback = WordEmbeddings.from_mlm_input_embeddings(model, tiny_tokenizer)
    assert set(fallback.words) == {t for t in TINY_VOCAB if t.isalpha() and t not in SPECIAL_TOKENS}
    matrix = model.get_input_embeddings().weight.detach()
    ids = {token: i for i, token in enumerate(TINY_VOCAB)}
    rows = matrix[[ids[w] for w in fallback.words]]
    assert fallback.nearest("movie", 4) == brute_force_nearest(rows, fallback.words, matrix[ids["movie"]], 4, "movie")
    movies = (matrix[ids["movie"]] + matrix[ids["##s"]]) / 2  # a multi-piece word: the mean of its pieces
    assert fallback.nearest("movies", 4) == brute_force_nearest(rows, fallback.words, movies, 4, "")

    augmenter = TinyBertAugmenter(model, tiny_tokenizer, top_k=4)  # no word_embeddings: the fallback
    assert augmenter.candidates(["movies"]) == {0: fallback.nearest("movies", 4)}


def test_checkpoint_without_mlm_head_warns(tmp_path, tiny_tokenizer, caplog):
    torch.manual_seed(0)
    BertModel(make_tiny_bert_config()).save_pretrained(tmp_path / "encoder")
    tiny_tokenizer.save_pretrained(tmp_path / "encoder")
    with caplog.at_level("WARNING", logger="hf_distill.data.augment_tinybert"):
        model, tokenizer = load_masked_lm(str(tmp_path / "encoder"))
    assert isinstance(model, BertForMaskedLM) and not model.training
    assert "initialised randomly" in caplog.text and "cls.predictions" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Dataset driver
# ----------------------------------------------------------------------------------------------------------------


def test_augment_dataset_keeps_originals_and_copies_columns(rigged_augmenter, sst2_dataset):
    rigged_augmenter.n_aug = 4
    out = augment_dataset(sst2_dataset, ["sentence"], rigged_augmenter, seed=1)
    assert out.column_names == ["sentence", "label", "idx", "augmented"]
    groups = defaultdict(list)
    for row in out:
        groups[row["idx"]].append(row)
    assert sorted(groups) == list(range(8))
    for idx, rows in groups.items():
        assert rows[0] == {**sst2_dataset[idx], "augmented": False}  # the original row first, untouched
        variants = [r["sentence"] for r in rows[1:]]
        assert all(r["augmented"] and r["label"] == sst2_dataset[idx]["label"] for r in rows[1:])
        assert len(variants) <= 4 and len(set(variants)) == len(variants)
    assert sum(out["augmented"]) > 8


def test_augment_dataset_is_deterministic_for_a_seed_whatever_num_proc_or_batch_size(rigged_augmenter, sst2_dataset):
    def run(**options):
        return augment_dataset(sst2_dataset, ["sentence"], rigged_augmenter, **{"seed": 5, **options}).to_dict()

    one = run()
    assert one == run(num_proc=2)
    assert one == run(batch_size=1)
    assert one != run(seed=6)


def test_pair_tasks_augment_each_side_with_the_other_unchanged(rigged_augmenter):
    rigged_augmenter.p_t, rigged_augmenter.n_aug = 1.0, 3
    pairs = datasets.Dataset.from_dict(
        {
            "sentence1": ["the movie was great", "a dull story"],
            "sentence2": ["the film was fun", "the plot is poor"],
            "label": [1, 0],
            "idx": [0, 1],
        }
    )
    out = augment_dataset(pairs, ["sentence1", "sentence2"], rigged_augmenter)
    changed_sides = defaultdict(set)
    for row in out.filter(lambda r: r["augmented"]):
        source = pairs[row["idx"]]
        changed = [c for c in ("sentence1", "sentence2") if row[c] != source[c]]
        assert len(changed) == 1  # one side varies, the other is the original text exactly
        changed_sides[row["idx"]].add(changed[0])
    assert changed_sides == {0: {"sentence1", "sentence2"}, 1: {"sentence1", "sentence2"}}
    assert len(out) <= 2 * (1 + 2 * 3)
    for idx in (0, 1):  # each example's rng draws its first side's variants, then its second's
        rng, source = random.Random(f"42:{idx}"), pairs[idx]
        expected = [{**source, "sentence1": v} for v in rigged_augmenter.augment(source["sentence1"], rng)]
        expected += [{**source, "sentence2": v} for v in rigged_augmenter.augment(source["sentence2"], rng)]
        rows = out.filter(lambda r, idx=idx: r["augmented"] and r["idx"] == idx).remove_columns("augmented")
        assert rows.to_list() == expected


def test_augment_dataset_errors(rigged_augmenter, sst2_dataset):
    with pytest.raises(ValueError, match="`text_columns`"):
        augment_dataset(sst2_dataset, ["premise"], rigged_augmenter)
    with pytest.raises(ValueError, match="`augmenter`"):
        augment_dataset(sst2_dataset, ["sentence"], object())
    twice = augment_dataset(sst2_dataset.select(range(1)), ["sentence"], rigged_augmenter)
    with pytest.raises(ValueError, match="`augmented`"):
        augment_dataset(twice, ["sentence"], rigged_augmenter)


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


def flags(**options) -> list[str]:
    return [item for name, value in options.items() for item in (f"--{name}", str(value))]


@pytest.fixture
def cli_files(tmp_path):
    """A tiny MLM folder and a 6-row csv; returns `(tmp_path, base options for the CLI)`."""
    mlm = tmp_path / "mlm"
    make_tiny_mlm().save_pretrained(mlm)
    make_tiny_tokenizer().save_pretrained(mlm)
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\n" + "".join(f"{s.strip()},{y}\n" for s, y in SST2_ROWS if "," not in s))
    return tmp_path, {"train_file": train, "text_columns": "sentence", "mlm_model_name_or_path": mlm}


def test_cli_end_to_end_writes_a_reloadable_jsonl(cli_files):
    tmp_path, options = cli_files
    out = tmp_path / "aug" / "train_aug.jsonl"
    written = augment_cli.main(flags(**options, n_aug=5, p_t=0.5, output_file=out))
    reloaded = datasets.load_dataset("json", data_files=str(out), split="train")
    assert reloaded.column_names == ["sentence", "label", "idx", "augmented"]
    assert len(reloaded) == len(written) > 6
    originals = [s.strip() for s, _ in SST2_ROWS if "," not in s]
    assert reloaded.filter(lambda row: not row["augmented"])["sentence"] == originals
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind

    # The file is a valid --train_file for the loader, with the labels it came with.
    raw, task = load_task_dataset(train_file=out, validation_file=out, text_columns=["sentence"])
    assert task.label_names == ("0", "1") and raw["train"]["label"] == reloaded["label"]

    config = tmp_path / "augment.json"
    settings = {**options, "n_aug": 5, "p_t": 0.5, "output_file": tmp_path / "again.jsonl"}
    config.write_text(json.dumps(settings, default=str))  # paths as strings, numbers as numbers
    augment_cli.main([str(config)])
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()  # same seed, same file


def test_cli_tang_method_without_pos_tagger(cli_files):
    tmp_path, options = cli_files
    out = tmp_path / "tang.tsv"
    augment_cli.main(flags(**options, method="tang", p_pos=0, p_mask=0.3, output_file=out))
    rows = datasets.load_dataset("csv", data_files=str(out), sep="\t", split="train")
    assert any("[MASK]" in s for s in rows["sentence"]) and sum(rows["augmented"]) > 0


def test_cli_writes_nothing_when_augmentation_or_writing_fails(cli_files, monkeypatch):
    tmp_path, options = cli_files
    out = tmp_path / "out" / "train_aug.jsonl"

    def broken(self, texts, rngs):
        raise RuntimeError("augmentation failed")

    with monkeypatch.context() as patch:
        patch.setattr(TinyBertAugmenter, "augment_batch", broken)
        with pytest.raises(RuntimeError, match="augmentation failed"):
            augment_cli.main(flags(**options, output_file=out))
    assert not out.exists()

    def half_written(self, path, **kwargs):
        with open(path, "w") as handle:
            handle.write('{"sentence": "the mov')
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.Dataset, "to_json", half_written)
    with pytest.raises(KeyboardInterrupt):
        augment_cli.main(flags(**options, output_file=out))
    assert list(out.parent.iterdir()) == []


def test_cli_errors(cli_files):
    tmp_path, options = cli_files
    with pytest.raises(ValueError, match="`output_file`.*extension"):
        augment_cli.main(flags(**options, output_file=tmp_path / "out.txt"))
    existing = tmp_path / "exists.jsonl"
    existing.write_text("{}\n")
    with pytest.raises(ValueError, match="`output_file`.*overwrite_output_file"):
        augment_cli.main(flags(**options, output_file=existing))
    with pytest.raises(ValueError, match="`glove_file`"):
        augment_cli.main(flags(**options, glove_file=tmp_path / "nope.txt", output_file=tmp_path / "o.csv"))
    with pytest.raises(ValueError, match="`sentences_per_batch` is 0"):
        augment_cli.main(flags(**options, sentences_per_batch=0, output_file=tmp_path / "o.csv"))


def test_cli_glue_task_writes_label_names_the_loader_maps_back(cli_files, tiny_sst2_dir):
    tmp_path, options = cli_files
    out = tmp_path / "sst2_aug.csv"
    mlm = options["mlm_model_name_or_path"]
    augment_cli.main(flags(task_name="sst2", data_dir=tiny_sst2_dir, mlm_model_name_or_path=mlm, output_file=out))
    assert set(datasets.load_dataset("csv", data_files=str(out), split="train")["label"]) == {"negative", "positive"}
    raw, task = load_task_dataset("sst2", train_file=out, validation_file=out)
    pairs = set(zip(raw["train"]["idx"], raw["train"]["label"], strict=True))  # every row keeps its source's label id
    assert pairs == {(i, y) for i, (_, y) in enumerate(SST2_ROWS)} and len(raw["train"]) > len(SST2_ROWS)
