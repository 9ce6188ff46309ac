"""The one way this library writes a result: under a temporary name in the destination's folder, renamed into place
when complete, so a reader (or a run resumed after a crash) never sees a half-written file or folder.

- `atomic_file(path)`: a context manager yielding a temporary file path to write; renamed to `path` on success.
- `write_text_atomic` / `write_json_atomic`: text and JSON results through `atomic_file`.
- `write_dataset_atomic`: a `datasets.Dataset` as .jsonl/.json/.csv/.tsv/.parquet (augmented training sets).
- `atomic_directory(path)`: a context manager yielding a temporary folder to fill; it replaces `path` on success.
- `move_files_into(staging, folder)`: each entry of a filled staging folder replaces its namesake in `folder` (a
  saved model moving into an `output_dir` that holds other files too).

On any failure (an error, a full disk, Ctrl-C) the temporary file or folder is removed and `path` keeps what it held.
"""

import csv
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

__all__ = [
    "atomic_directory",
    "atomic_file",
    "move_files_into",
    "write_dataset_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _temporary_sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name next to `path`: `.<name>.<kind>-<random>`."""
    return path.parent / f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}"


def _fsync(path: Path) -> None:
    """Flush `path`'s content to disk before it is renamed into place (best effort: some filesystems cannot)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary file in `path`'s folder (created here, with the usual permissions); write it
    completely inside the block. On success it is flushed to disk and renamed to `path` with `os.replace` (atomic,
    replacing what was there); on failure it is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path, "tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `atomic_file`."""
    with atomic_file(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY), "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write `payload` as indented, key-sorted JSON to `path` through `atomic_file`."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_dataset_atomic(dataset: "datasets.Dataset", path: str | os.PathLike) -> None:
    """Write `dataset` to `path` through `atomic_file`, in the format of its extension: JSON lines for .jsonl/.json,
    Parquet for .parquet, else CSV (TSV, never quoted, for .tsv, like the GLUE files and the loader reading them)."""
    suffix = Path(path).suffix.lower()
    with atomic_file(path) as tmp:
        if suffix in (".jsonl", ".json"):
            dataset.to_json(tmp, lines=True, force_ascii=False)
        elif suffix == ".parquet":
            dataset.to_parquet(tmp)
        else:
            options = {"sep": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
            dataset.to_csv(tmp, index=False, **options)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary folder next to `path`; fill it inside the block. On success it takes `path`'s
    place (what was there is moved aside, then deleted); on failure it is deleted and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = _temporary_sibling(path, "old")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_files_into(staging: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Move every entry of `staging` (a hidden folder inside `folder`, so each move is a rename) into `folder`,
    replacing its namesake with `os.replace`, then remove `staging`. A reader sees each file old or new, never
    truncated; a folder entry is replaced whole (the old one deleted first)."""
    staging, folder = Path(staging), Path(folder)
    for entry in sorted(staging.iterdir()):
        target = folder / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
