"""Corrupted test sets of a dataset → `results/data/{dataset}-c.h5` (docs/definitions.md §8).

The file layout is documented in featdyn.data.

CIFAR-10 and CIFAR-100 use the published CIFAR-10-C / CIFAR-100-C releases, looked up in the local
mirror folders (`<mirror>/CIFAR-10-C/<corruption>.npy`), then in the cache, else downloaded from
Zenodo (about 2.9 GB each). Every other dataset gets its test set corrupted locally by
`featdyn.corruptions` (severities documented there), deterministic per seed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featdyn.corruptions import (
    CIFAR_C_RELEASES,
    CifarCRelease,
    corrupt_all,
    images_to_float,
    images_to_uint8,
    read_cifar_c,
)
from featdyn.data import read_dataset
from featdyn.io import atomic_h5

CorruptedSet = tuple[tuple[str, int], np.ndarray]
"""((corruption, severity), raw corrupted test inputs)."""


class CorruptedDataUnavailable(RuntimeError):
    """A CIFAR-C release is neither on disk nor downloadable (offline)."""


def locally_corrupted(
    x_test: np.ndarray, names: Sequence[str], severities: Sequence[int], seed: int
) -> Iterator[CorruptedSet]:
    """Corrupt raw test inputs (uint8 (N, C, H, W) images or float32 (N, L) signals); same format out."""
    is_image = x_test.dtype == np.uint8
    x = images_to_float(x_test, layout="NCHW") if is_image else torch.from_numpy(x_test).float()
    for key, corrupted in corrupt_all(x, names, severities, seed):
        raw = images_to_uint8(corrupted, layout="NCHW") if is_image else corrupted.float()
        yield key, raw.numpy()


def cifar_c_folder(
    source: str, names: Sequence[str], mirror_dirs: Sequence[str], cache_dir: str | os.PathLike
) -> Path:
    """The folder holding `<name>.npy` and `labels.npy` of CIFAR-10-C / CIFAR-100-C, downloading the
    release from Zenodo into `cache_dir` when no mirror folder or earlier download has them."""
    release = CIFAR_C_RELEASES[source]
    cached = Path(cache_dir) / release.folder
    for folder in [*(Path(d) / release.folder for d in mirror_dirs), cached]:
        if all((folder / f"{stem}.npy").is_file() for stem in [*names, "labels"]):
            return folder
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(release.url, str(cache_dir), md5=release.md5, remove_finished=True)
    except Exception as err:  # URLError / OSError / RuntimeError when offline
        raise CorruptedDataUnavailable(
            _unavailable_message(release, names, mirror_dirs, cached, err)
        ) from err
    return cached


def _unavailable_message(
    release: CifarCRelease, names: Sequence[str], mirror_dirs: Sequence[str], cached: Path, err: Exception
) -> str:
    dirs = ", ".join(str(Path(d) / release.folder) for d in mirror_dirs) or "(no `mirror_dirs` configured)"
    return (
        f"{release.folder} could not be downloaded from {release.url} "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).\n"
        f"To run offline, extract {release.url.rsplit('/', 1)[-1]} (MD5 {release.md5}) so that one of the "
        f"folders [{dirs}] (config key `mirror_dirs`, subfolder {release.folder!r}) or {cached} holds "
        f"labels.npy and {', '.join(f'{n}.npy' for n in names)}."
    )


def cifar_c_sets(
    folder: str | os.PathLike, names: Sequence[str], severities: Sequence[int]
) -> tuple[np.ndarray, Iterator[CorruptedSet]]:
    """Test labels and the (N, C, H, W) uint8 corrupted sets of an extracted CIFAR-C release."""
    data = read_cifar_c(folder, names, severities)
    labels = [np.asarray(y) for _, y in data.values()]
    if any(not np.array_equal(y, labels[0]) for y in labels):
        raise ValueError(f"{folder}: labels.npy differs between severities; the release looks damaged")
    sets = ((key, np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))) for key, (x, _) in data.items())
    return labels[0].astype(np.int64), sets


def write_corrupted_file(
    path: str | os.PathLike,
    y: np.ndarray,
    sets: Iterable[CorruptedSet],
    names: Sequence[str],
    severities: Sequence[int],
    provenance: Mapping[str, Any],
) -> None:
    """Write the `{dataset}-c.h5` file: root `y`, `/{corruption}/{severity}/x`, attrs `corruptions`,
    `severities`; every (name, severity) pair must be among `sets`."""
    written = set()
    with atomic_h5(path, provenance) as f:
        f.create_dataset("y", data=np.asarray(y, dtype=np.int64))
        for (name, severity), x in sets:
            if len(x) != len(y):
                raise ValueError(
                    f"corrupted set {name}-{severity} has {len(x)} samples, labels have {len(y)}"
                )
            f.create_dataset(
                f"{name}/{severity}/x", data=x, compression="gzip", compression_opts=4, chunks=True
            )
            written.add((name, severity))
        missing = sorted({(n, s) for n in names for s in severities} - written)
        if missing:
            raise ValueError(f"corrupted sets missing from the input: {missing}")
        f.attrs["corruptions"] = list(names)
        f.attrs["severities"] = np.asarray(severities, dtype=np.int64)


def build_corrupted_file(
    clean_path: str | os.PathLike,
    path: str | os.PathLike,
    names: Sequence[str],
    severities: Sequence[int],
    seed: int,
    mirror_dirs: Sequence[str] = (),
    cache_dir: str | os.PathLike = "results/cache",
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Corrupted test sets of the dataset stored at `clean_path`: CIFAR-C releases for CIFAR-10/100,
    local corruptions of the test set otherwise."""
    arrays = read_dataset(clean_path)
    if arrays.source in CIFAR_C_RELEASES:
        folder = cifar_c_folder(arrays.source, names, mirror_dirs, cache_dir)
        y, sets = cifar_c_sets(folder, names, severities)
        if not np.array_equal(y, arrays.y_test):
            warnings.warn(f"{folder}: labels.npy differs from the test labels of {clean_path}", stacklevel=2)
    else:
        y, sets = arrays.y_test, locally_corrupted(arrays.x_test, names, severities, seed)
    write_corrupted_file(path, y, sets, names, severities, provenance or {})
