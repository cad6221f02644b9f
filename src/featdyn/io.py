"""Atomic file output and HDF5 helpers shared by every stage."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import pandas as pd

from featdyn import __version__
from featdyn.h5files import open_h5

Record = TypeVar("Record")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_WRITE_FAILURES = {
    errno.ENOSPC: ("the file system is full", "free space there (`df -h {folder}`)"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota (`quota -s`)"),
    errno.EACCES: ("permission denied", "make `{folder}` writable for this user"),
    errno.EPERM: ("operation not permitted", "make `{folder}` writable for this user"),
    errno.EROFS: ("the file system is read-only", "write results to a writable file system"),
}
"""errno → (what happened, what to do) for the usual reasons a write fails."""


class OutputWriteError(OSError):
    """Writing an output failed; nothing was left at its path (an older file there is untouched)."""

    def __init__(self, path: Path, error: OSError):
        self.path = path
        folder = path.parent
        what, todo = _WRITE_FAILURES.get(error.errno, (error.strerror or str(error), "fix the cause"))
        message = (
            f"could not write `{path}`: {what} ({error}). No partial file was left behind; "
            f"{todo.format(folder=folder)} and run again."
        )
        super().__init__(error.errno, message)

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An OSError while creating, writing or renaming (disk full, permission denied) removes the
    temporary file and becomes an `OutputWriteError` that names `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OutputWriteError(path, error) from error
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OutputWriteError:
        raise
    except OSError as error:
        raise OutputWriteError(path, error) from error
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, provenance: Mapping[str, Any] | None = None) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing that appears at `path` only once fully written.

    `provenance` (the config subtree that made the file) is stored as JSON in the `config` attribute,
    beside the featdyn version, so every result can be traced without the workflow.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["featdyn_version"] = __version__
            f.attrs["config"] = json.dumps(provenance or {}, sort_keys=True, default=str)
            yield f


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a tab-separated table atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_provenance(f: h5py.File) -> dict[str, Any]:
    """The config subtree stored by `atomic_h5`."""
    return json.loads(f.attrs.get("config", "{}"))


def save_arrays(group: h5py.Group, arrays: Mapping[str, Any], compress: bool = True) -> None:
    """Store each array (or scalar) of `arrays` as a dataset of `group`."""
    for name, value in arrays.items():
        value = np.asarray(value)
        opts = {"compression": "gzip", "compression_opts": 4} if compress and value.size > 1024 else {}
        group.create_dataset(name, data=value, **opts)


def load_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    """Read every dataset directly under `group` into memory."""
    return {name: item[()] for name, item in group.items() if isinstance(item, h5py.Dataset)}


def write_records(path: str | os.PathLike, records: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """One HDF5 group per record (a dataclass of arrays and scalars), named by its key (a key may be a path,
    `0/converged`); attribute `records` keeps their order."""
    with atomic_h5(path, provenance) as f:
        f.attrs["records"] = list(records)
        for name, record in records.items():
            save_arrays(f.create_group(name), vars(record))


def read_records(path: str | os.PathLike, record_type: Callable[..., Record] = dict) -> dict[str, Record]:
    """The records of a `write_records` file, in their order, as `record_type` (a dataclass, or plain
    dicts of arrays, which need no import of the module that wrote them)."""
    with open_h5(path, attrs=("records",)) as f:
        return {name: record_type(**load_arrays(f[name])) for name in f.attrs["records"]}


def log_to(path: str | os.PathLike) -> None:
    """Send this process's stdout, stderr (tracebacks, progress bars) and warnings to a log file.

    An uncaught exception still goes to the log with its traceback, and its one-line message also
    to the original stderr, so the console says what failed without opening the log.
    """
    import logging
    import sys
    import traceback

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.captureWarnings(True)

    def report(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        traceback.print_exception(kind, error, tb, file=stream)
        print(f"{kind.__name__}: {error}\n(traceback in {path})", file=sys.__stderr__, flush=True)

    sys.excepthook = report
