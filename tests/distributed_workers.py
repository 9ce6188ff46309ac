"""Worker programs for tests/test_distributed_teacher.py and tests/test_multiprocess.py. Each runs in its own process:
they initialise torch.distributed and DeepSpeed's global ZeRO-3 state, which must not leak into the test process.

    python tests/distributed_workers.py zero3 TEACHER_DIR          # DeepSpeed, one process (gloo)
    python tests/distributed_workers.py deepspeed_guards           # DeepSpeed configs hf_distill refuses
    torchrun --nproc_per_node 2 tests/distributed_workers.py broadcast TEACHER_DIR OUT_DIR
    torchrun --nproc_per_node 2 tests/distributed_workers.py cross_tokenizer SST2_DIR OUT_DIR EPOCHS

Each exits non-zero, with the failed assertion, when a check fails; `cross_tokenizer` writes what it saw instead.
"""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_distill.distributed import is_partitioned, prepare_teacher  # noqa: E402
from hf_distill.students import build_bilstm_student, build_sps_student, build_student_from_teacher  # noqa: E402
from hf_distill.summary import count_parameters  # noqa: E402

SENTENCES = ["the movie is good", "the plot is dull and far too long"]


def load(teacher_dir: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(teacher_dir), AutoTokenizer.from_pretrained(teacher_dir)


def students(teacher, tokenizer) -> dict[str, dict[str, torch.Tensor]]:
    """The state dicts of one student of each kind built from `teacher` (fresh tensors from one seed)."""
    torch.manual_seed(0)
    built = {
        "truncated": build_student_from_teacher(teacher, num_layers=1),
        "sps": build_sps_student(teacher, num_layers=1),
        "bilstm": build_bilstm_student(tokenizer, num_labels=2, is_pair=False, teacher=teacher),
    }
    return {name: {key: value.clone() for key, value in model.state_dict().items()} for name, model in built.items()}


def assert_same_state(expected: dict, actual: dict, what: str) -> None:
    assert expected.keys() == actual.keys(), what
    for key in expected:
        assert torch.equal(expected[key], actual[key]), f"{what}: {key} differs"


def zero3(teacher_dir: str) -> None:
    """A ZeRO-3-partitioned teacher gives the replica's students, parameter count and outputs."""
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    reference, tokenizer = load(teacher_dir)
    reference.eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch, output_hidden_states=True)
    expected_students = students(reference, tokenizer)

    # Persistence threshold 0: every parameter is released after use, so the checks below see real partitioning.
    config = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
              "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "train_batch_size": 2,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}
    active = HfDeepSpeedConfig(config)  # noqa: F841  (while alive, from_pretrained partitions under zero.Init)
    teacher, _ = load(teacher_dir)
    assert is_partitioned(teacher) and next(teacher.parameters()).numel() == 0, "teacher not partitioned"
    assert count_parameters(teacher) == count_parameters(reference)
    for name, state in students(teacher, tokenizer).items():
        assert_same_state(expected_students[name], state, f"{name} student from the ZeRO-3 teacher")

    teacher, engine = prepare_teacher(teacher, "cpu", config)
    assert engine is not None and engine.module is teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        actual = teacher(**batch, output_hidden_states=True)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-6)
    for layer, (want, got) in enumerate(zip(expected.hidden_states, actual.hidden_states, strict=True)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=f"hidden state {layer}")
    assert next(teacher.parameters()).numel() == 0, "the teacher's weights stayed gathered after the forward pass"
    print("zero3 ok")


def deepspeed_guards() -> None:
    """DeepSpeed settings DistillationConfig refuses, each with an error naming the argument."""
    from hf_distill import DistillationConfig

    zero3_config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto"}
    refused = {
        "teacher_cache": dict(method="kd", teacher_cache="cache", deepspeed=zero3_config),
        "tinybert_stage 1": dict(method="tinybert", deepspeed=zero3_config),
    }
    for expected_text, kwargs in refused.items():
        try:
            DistillationConfig(output_dir="out", report_to="none", **kwargs)
        except ValueError as error:
            assert expected_text in str(error), str(error)
        else:
            raise AssertionError(f"DistillationConfig accepted {kwargs}")
    accepted = [
        dict(method="kd", teacher_cache="cache", deepspeed={**zero3_config, "zero_optimization": {"stage": 2}}),
        dict(method="tinybert", tinybert_stage=2, deepspeed=zero3_config),
        dict(method="pkd", deepspeed=zero3_config),
    ]
    for kwargs in accepted:
        DistillationConfig(output_dir="out", report_to="none", **kwargs)
    print("guards ok")


def tear_down() -> None:
    """Leave the process group together: a rank that destroyed it (closing its gloo connections) while its peer was
    still finishing could take the peer down at exit (one CI run: rank 1 aborted with "terminate called without an
    active exception" after both ranks had trained); the barrier makes both ranks done before either tears down."""
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def broadcast(teacher_dir: str, out_dir: str) -> None:
    """Ranks that loaded different weights hold rank 0's teacher after `prepare_teacher`."""
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    teacher, _ = load(teacher_dir)
    checkpoint = {key: value.clone() for key, value in teacher.state_dict().items()}
    if rank == 1:  # as after FSDP's RAM-efficient loading, which reads the checkpoint on rank 0 only
        with torch.no_grad():
            for parameter in teacher.parameters():
                parameter.add_(1.0)
    teacher, engine = prepare_teacher(teacher, "cpu")
    assert engine is None and not teacher.training
    assert_same_state(checkpoint, teacher.state_dict(), f"rank {rank} teacher")
    (Path(out_dir) / f"rank{rank}.ok").write_text("ok")
    tear_down()


def checked_cross_tokenizer_run(sst2_dir: Path, out_dir: Path, epochs: int, teacher_cache: Path | None) -> dict:
    """kd into a student with its own tokenizer (tests/test_cross_tokenizer.py's `cross_trainer`), 2 rows per process
    and step over `epochs` shuffled epochs, with the teacher cache at `teacher_cache` if given. Every batch the loss
    gets is checked row by row: its teacher side decoded with the teacher's tokenizer, its student side decoded with
    the student's and the row's sentence (by `idx`) after the teacher's tokenizer must be one text; with the cache,
    the logits cached for the batch's cache rows must be the teacher's on its teacher side. Returns what this process
    checked: the `idx` of its rows in each epoch, the cached batches and every mismatch."""
    from conftest import make_tiny_tokenizer
    from test_cross_tokenizer import cross_trainer
    from transformers import TrainerCallback

    cache = {"teacher_cache": str(teacher_cache)} if teacher_cache else {}
    # A float32 teacher, as in the test process, where conftest patches the probe that resolves "auto".
    trainer, raw, student_tokenizer = cross_trainer(out_dir, sst2_dir, batch_size=2, method="kd",
                                                    num_train_epochs=epochs, save_strategy="no",
                                                    teacher_dtype="float32", **cache)
    teacher_tokenizer = make_tiny_tokenizer()
    report = {"world_size": trainer.args.world_size, "epochs": [], "cached_batches": 0, "mismatches": []}

    class NewEpoch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            report["epochs"].append([])

    def check(inputs: dict[str, torch.Tensor]) -> None:
        for row, idx in enumerate(inputs["idx"].tolist()):
            sentence = teacher_tokenizer(raw["train"][idx]["sentence"])["input_ids"]
            texts = {"teacher side": teacher_tokenizer.decode(inputs["input_ids"][row], skip_special_tokens=True),
                     "student side": student_tokenizer.decode(inputs["student_input_ids"][row],
                                                              skip_special_tokens=True),
                     "sentence": teacher_tokenizer.decode(sentence, skip_special_tokens=True)}
            if len(set(texts.values())) > 1:
                report["mismatches"].append({"epoch": len(report["epochs"]) - 1, "idx": idx, **texts})
            report["epochs"][-1].append(idx)
        if trainer.teacher_cache is not None:
            cached = trainer.teacher_cache.lookup(inputs["teacher_cache_row"]).logits
            with torch.no_grad():
                online = trainer.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                         token_type_ids=inputs["token_type_ids"]).logits
            if not torch.allclose(cached, online, rtol=1e-5, atol=1e-6):
                report["mismatches"].append({"epoch": len(report["epochs"]) - 1, "idx": inputs["idx"].tolist(),
                                             "cached logits": cached.tolist(), "teacher logits": online.tolist()})
            report["cached_batches"] += 1

    compute_loss = trainer.compute_loss

    def checked_compute_loss(model, inputs, *args, **kwargs):
        check(inputs)
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = checked_compute_loss
    trainer.add_callback(NewEpoch())
    trainer.train()
    return report


def cross_tokenizer(sst2_dir: str, out_dir: str, epochs: str) -> None:
    """`checked_cross_tokenizer_run` with the teacher, then with its cache (one launch: the imports dominate). Writes
    `rank{rank}.json`: this process's report of each run, under "teacher" and "teacher cache"."""
    out = Path(out_dir)
    reports = {name: checked_cross_tokenizer_run(Path(sst2_dir), out, int(epochs), cache)
               for name, cache in (("teacher", None), ("teacher cache", out / "cache"))}
    (out / f"rank{torch.distributed.get_rank()}.json").write_text(json.dumps(reports))
    tear_down()


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    {"zero3": zero3, "deepspeed_guards": deepspeed_guards, "broadcast": broadcast,
     "cross_tokenizer": cross_tokenizer}[mode](*arguments)
