"""Datasets: fetch (torchvision, local mirrors, embedded generators) → one HDF5 file per dataset.

Layout of `results/data/{dataset}.h5`: `train/x`, `train/y`, `test/x`, `test/y` (images as uint8
(N, C, H, W), signals as float32 (N, L)), attributes `source`, `classes`, `sample_shape`, `checksum`
(sha256 of the raw files), `normalize` (JSON: how inputs are normalised before a model sees them,
`input_normalizer`) and the config subtree that made it. Sources from outside featdyn (`folder`,
`arrays`, `torchvision:<ClassName>`) are fetched by `featdyn.external_data`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featdyn.h5files import UnusableInputError, open_h5
from featdyn.io import atomic_h5

DEBIAN_DATASET_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
"""Where Debian packages put datasets (`apt-get install dataset-fashion-mnist`)."""


@dataclass(frozen=True)
class TorchvisionSource:
    cls_name: str
    classes: int
    raw_files: tuple[str, ...]
    raw_subdir: str = ""
    split_kw: str = "train"  # "train" (bool) or "split" ("train"/"test")


TORCHVISION: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource(
        "MNIST",
        10,
        (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        "MNIST/raw",
    ),
    "fashion_mnist": TorchvisionSource(
        "FashionMNIST",
        10,
        (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        "FashionMNIST/raw",
    ),
    "cifar10": TorchvisionSource("CIFAR10", 10, ("cifar-10-python.tar.gz",)),
    "cifar100": TorchvisionSource("CIFAR100", 100, ("cifar-100-python.tar.gz",)),
    "svhn": TorchvisionSource("SVHN", 10, ("train_32x32.mat", "test_32x32.mat"), split_kw="split"),
    "stl10": TorchvisionSource("STL10", 10, ("stl10_binary.tar.gz",), split_kw="split"),
}
EMBEDDED = {"mnist1d": 10, "digits": 10}
SOURCES = sorted([*TORCHVISION, *EMBEDDED])
CLASSES = {**{name: spec.classes for name, spec in TORCHVISION.items()}, **EMBEDDED}
EXTERNAL_SOURCES = ("folder", "arrays", "torchvision:<ClassName>")
"""Sources from outside featdyn (`featdyn.external_data`)."""
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "svhn": (3, 32, 32),
    "stl10": (3, 96, 96),
    "mnist1d": (40,),
    "digits": (1, 8, 8),
}
"""Input shape of one sample (without the batch axis) per source, as fetched."""


def sample_shape(entry: Mapping[str, Any]) -> tuple[int, ...]:
    """Input shape of one sample of a `datasets` entry as stored and seen by the models (after `pad_to`)."""
    shape = SAMPLE_SHAPES[entry["source"]]
    if entry["pad_to"] is None:
        return shape
    if len(shape) != 3:
        raise ValueError(f"pad_to applies to images; source {entry['source']!r} holds signals")
    return (shape[0], entry["pad_to"], entry["pad_to"])


class DatasetUnavailable(RuntimeError):
    """A dataset could not be fetched (offline and no local copy)."""


@dataclass
class Arrays:
    """A dataset in memory: raw arrays as stored in the HDF5 file."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str
    normalize: str | Mapping[str, Any] = "featdyn"
    """`featdyn`, `none` or `{mean, std}` (dataset config key `normalize`, see `input_normalizer`)."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# --- sources -----------------------------------------------------------------------------------


def is_external_source(source: str) -> bool:
    """Whether a dataset source comes from outside featdyn: `folder`, `arrays`, `torchvision:<Class>`."""
    return source in ("folder", "arrays") or source.startswith("torchvision:")


def describe_dataset(entry: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(sample shape, number of classes) of a `datasets` entry without fetching it: from the tables of
    the built-in sources, or cheaply from the files of an outside one (`describe_external`)."""
    source = entry["source"]
    if is_external_source(source):
        from featdyn.external_data import describe_external  # builds on this module

        return describe_external(source, entry)
    return sample_shape(entry), CLASSES[source]


# --- fetching ----------------------------------------------------------------------------------


def fetch(source: str, options: Mapping[str, Any], cache_dir: str | os.PathLike) -> Arrays:
    """Fetch dataset `source` with its `datasets` entry `options` (defaults filled, as
    `featdyn.config.dataset_entry` gives them) and the global `mirror_dirs`."""
    if source == "mnist1d":
        arrays = _mnist1d(int(options["num_samples"]), int(options["seed"]))
    elif source == "digits":
        arrays = _digits(float(options["test_fraction"]), int(options["seed"]))
    elif source in TORCHVISION:
        arrays = _torchvision(source, options, Path(cache_dir))
    elif is_external_source(source):
        from featdyn.external_data import fetch_external

        arrays = fetch_external(source, options, cache_dir)
    else:
        raise ValueError(f"unknown dataset source {source!r}; available: {[*SOURCES, *EXTERNAL_SOURCES]}")
    arrays.normalize = options["normalize"]
    return arrays


def _mnist1d(num_samples: int, seed: int) -> Arrays:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    d = make_dataset(args)
    return Arrays(
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
        10,
        "mnist1d",
    )


def _digits(test_fraction: float, seed: int) -> Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images * (255 / 16)).round().astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Arrays(xtr, ytr, xte, yte, 10, "digits")


def _torchvision(source: str, options: Mapping[str, Any], cache_dir: Path) -> Arrays:
    import torchvision.datasets as tvd

    spec = TORCHVISION[source]
    cls = getattr(tvd, spec.cls_name)
    root = cache_dir / source
    _seed_from_local_copies(spec, source, root, options["mirror_dirs"])
    if options["mirrors"]:  # URL mirrors (and their files' md5 sums), MNIST-style datasets
        md5 = options["md5"]
        resources = [(name, md5[name] if name in md5 else digest) for name, digest in cls.resources]
        cls = type(cls.__name__, (cls,), {"mirrors": list(options["mirrors"]), "resources": resources})
    try:
        parts = [cls(str(root), download=True, **_split_kwargs(spec, train)) for train in (True, False)]
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError when offline
        raise DatasetUnavailable(_unavailable_message(source, spec, options, root, err)) from err
    (xtr, ytr), (xte, yte) = (_as_arrays(p) for p in parts)
    _check_labels(source, ytr, spec.classes)
    _check_labels(source, yte, spec.classes)
    return Arrays(xtr, ytr, xte, yte, spec.classes, source)


def _split_kwargs(spec: TorchvisionSource, train: bool) -> dict[str, Any]:
    if spec.split_kw == "split":
        return {"split": "train" if train else "test"}
    return {"train": train}


def _seed_from_local_copies(
    spec: TorchvisionSource, source: str, root: Path, mirror_dirs: Sequence[str]
) -> None:
    """Copy raw files found in local mirror folders (and Debian's) to where torchvision looks first."""
    target = root / spec.raw_subdir
    folders = [Path(d) / source for d in mirror_dirs] + [Path(d) for d in mirror_dirs]
    if source in DEBIAN_DATASET_DIRS:
        folders.append(Path(DEBIAN_DATASET_DIRS[source]))
    for name in spec.raw_files:
        for folder in folders:
            if (folder / name).is_file():
                _place_raw_file(folder / name, target, extract=spec.raw_subdir.endswith("raw"))
                break


def _place_raw_file(source: Path, target: Path, extract: bool) -> None:
    """Copy a raw file where torchvision looks; MNIST-style .gz files are stored extracted, as torchvision
    keeps them, so that recompressed copies (Debian's differ in their gzip bytes) need no checksum."""
    target.mkdir(parents=True, exist_ok=True)
    if extract and source.suffix == ".gz":
        destination = target / source.stem
        if not destination.exists():
            with gzip.open(source, "rb") as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)
    elif not (target / source.name).exists():
        shutil.copyfile(source, target / source.name)


def _unavailable_message(
    source: str, spec: TorchvisionSource, options: Mapping[str, Any], root: Path, err: Exception
) -> str:
    dirs = ", ".join(str(d) for d in options["mirror_dirs"]) or "(none configured)"
    return (
        f"dataset {source!r} could not be downloaded ({type(err).__name__}: {str(err).splitlines()[0]}).\n"
        f"To run offline, put its raw files {', '.join(spec.raw_files)} into one of the local mirror "
        f"folders [{dirs}] (config key `mirror_dirs`, optionally in a subfolder named {source!r}), "
        f"or into {root / spec.raw_subdir}."
        + (
            f" On Debian: apt-get install dataset-{source.replace('_', '-')}."
            if source in DEBIAN_DATASET_DIRS
            else ""
        )
    )


def _as_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if data.ndim == 3:  # (N, H, W) grey
        data = data[:, None]
    elif data.ndim == 4 and data.shape[-1] == 3:  # CIFAR: NHWC
        data = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data, dtype=np.uint8), labels.astype(np.int64)


def _check_labels(source: str, y: np.ndarray, classes: int) -> None:
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"{source}: labels outside 0..{classes - 1} (min {y.min()}, max {y.max()})")


def raw_checksum(arrays: Arrays) -> str:
    h = hashlib.sha256()
    for a in (arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# --- HDF5 round trip ---------------------------------------------------------------------------


def write_dataset(arrays: Arrays, path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    with atomic_h5(path, provenance) as f:
        for split, x, y in (
            ("train", arrays.x_train, arrays.y_train),
            ("test", arrays.x_test, arrays.y_test),
        ):
            g = f.create_group(split)
            g.create_dataset("x", data=x, compression="gzip", compression_opts=4, chunks=True)
            g.create_dataset("y", data=y)
        f.attrs.update(
            source=arrays.source,
            classes=arrays.classes,
            sample_shape=arrays.sample_shape,
            checksum=raw_checksum(arrays),
            normalize=json.dumps(arrays.normalize, sort_keys=True),
        )


def read_dataset(path: str | os.PathLike) -> Arrays:
    with open_h5(path, ("train/x", "train/y", "test/x", "test/y"), attrs=("classes", "source")) as f:
        return Arrays(
            f["train/x"][()],
            f["train/y"][()],
            f["test/x"][()],
            f["test/y"][()],
            int(f.attrs["classes"]),
            str(f.attrs["source"]),
            json.loads(f.attrs["normalize"]) if "normalize" in f.attrs else "featdyn",
        )


def download_to(
    source: str,
    options: Mapping[str, Any],
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
) -> Arrays:
    """Fetch a dataset and write its HDF5 file; the raw download cache defaults to a temp folder."""
    if cache_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            arrays = fetch(source, options, tmp)
    else:
        arrays = fetch(source, options, cache_dir)
    arrays = pad_images(subsample(arrays, options), options["pad_to"])
    write_dataset(arrays, path, {"source": source, **options})
    return arrays


def subsample(arrays: Arrays, options: Mapping[str, Any]) -> Arrays:
    """Seeded subsets of `train_samples` training and `test_samples` test samples (null: all)."""
    train = subset_indices(len(arrays.y_train), options["train_samples"], options["seed"])
    test = subset_indices(len(arrays.y_test), options["test_samples"], options["seed"] + 1)
    return replace(
        arrays,
        x_train=arrays.x_train[train],
        y_train=arrays.y_train[train],
        x_test=arrays.x_test[test],
        y_test=arrays.y_test[test],
    )


def pad_images(arrays: Arrays, size: int | None) -> Arrays:
    """Zero-pad (N, C, H, W) images symmetrically to size × size (e.g. 28 → 32 for ResNet-20); None: as is."""
    if size is None:
        return arrays
    _, height, width = arrays.sample_shape
    if size < max(height, width):
        raise ValueError(f"pad_to = {size} is smaller than the images ({height} × {width})")
    top, left = (size - height) // 2, (size - width) // 2
    pad = ((0, 0), (0, 0), (top, size - height - top), (left, size - width - left))
    return replace(arrays, x_train=np.pad(arrays.x_train, pad), x_test=np.pad(arrays.x_test, pad))


# --- tensors for training ----------------------------------------------------------------------


@dataclass
class TensorData:
    """Normalised float tensors on one device, ready for batched training and evaluation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 images → [0, 1] floats; float data unchanged."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float().div_(255) if t.dtype == torch.uint8 else t.float()


def normalizer(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training set (images), or global ones (signals)."""
    if x_train.ndim == 4:
        dims = (0, 2, 3)
        mean, std = x_train.mean(dims, keepdim=True)[0], x_train.std(dims, keepdim=True)[0]
    else:
        mean, std = x_train.mean().reshape(1), x_train.std().reshape(1)
    return mean, std.clamp_min(1e-6)


def normalize(x: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (to_float(x) - mean) / std


def input_normalizer(arrays: Arrays) -> tuple[torch.Tensor, torch.Tensor]:
    """The (mean, std) every model input of the dataset is normalised with, x -> (x - mean) / std of
    its `to_float` values (images in [0, 1]). `featdyn`: the training-set statistics (`normalizer`);
    `none`: no normalisation; `{mean, std}`: given constants, one per channel or one for all (as
    torchvision's `Normalize`) -- the normalisation an outside training script used."""
    rule = arrays.normalize
    if rule == "featdyn":
        return normalizer(to_float(arrays.x_train))
    if rule == "none":
        return torch.zeros(1), torch.ones(1)
    ndim = arrays.x_train.ndim
    channels = arrays.x_train.shape[1] if ndim >= 3 else 1
    stats = []
    for key in ("mean", "std"):
        values = torch.as_tensor(rule[key], dtype=torch.float32).flatten()
        if len(values) not in (1, channels):
            raise ValueError(
                f"dataset option normalize.{key} has {len(values)} values; give one, or one per channel "
                f"({channels})"
            )
        stats.append(values.reshape(-1, *[1] * (ndim - 2)) if len(values) > 1 else values)
    if not bool((stats[1] > 0).all()):
        raise ValueError(f"dataset option normalize.std must be positive, not {rule['std']}")
    return stats[0], stats[1]


def tensor_data(
    arrays: Arrays, device: str | torch.device = "cpu", train_labels: np.ndarray | None = None
) -> TensorData:
    """Normalise (`input_normalizer`) and move everything to `device` once."""
    mean, std = input_normalizer(arrays)
    y_train = arrays.y_train if train_labels is None else train_labels
    return TensorData(
        normalize(arrays.x_train, mean, std).to(device),
        torch.as_tensor(y_train, dtype=torch.long, device=device),
        normalize(arrays.x_test, mean, std).to(device),
        torch.as_tensor(arrays.y_test, dtype=torch.long, device=device),
        arrays.classes,
    )


LABEL_NOISE_KINDS = ("uniform", "symmetric")
"""How a sample chosen for label noise gets its new label (docs/definitions.md §11)."""


def noisy_labels(
    y: np.ndarray, fraction: float, classes: int, seed: int, kind: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel a seeded choice of exactly round(fraction · n) samples; returns (labels, mask of chosen).

    `uniform`: the new label is drawn from all classes (may keep the true one, so the realised wrong
    share is ≈ fraction · (K−1)/K). `symmetric`: drawn uniformly from the K−1 other classes, so every
    chosen label is wrong. Both kinds choose the same samples for the same seed (docs/definitions.md §11).
    """
    if kind not in LABEL_NOISE_KINDS:
        raise ValueError(f"unknown label noise kind {kind!r}; available: {list(LABEL_NOISE_KINDS)}")
    rng = np.random.default_rng(seed)
    n_noisy = int(round(fraction * len(y)))
    mask = np.zeros(len(y), dtype=bool)
    mask[rng.choice(len(y), size=n_noisy, replace=False)] = True
    y_noisy = y.copy()
    if kind == "uniform":
        y_noisy[mask] = rng.integers(0, classes, size=n_noisy)
    else:  # a shift by 1..K−1 is uniform over the other classes
        y_noisy[mask] = (y[mask] + rng.integers(1, classes, size=n_noisy)) % classes
    return y_noisy, mask


def mislabelled(labels: np.ndarray, true_labels: np.ndarray) -> np.ndarray:
    """Training label differs from the true label (docs/definitions.md §11): the target of §14."""
    return np.asarray(labels) != np.asarray(true_labels)


def realised_wrong_share(labels: np.ndarray, true_labels: np.ndarray) -> float:
    """Share of training labels that differ from the true labels (§11)."""
    return float(mislabelled(labels, true_labels).mean())


def subset_indices(n: int, size: int | None, seed: int) -> np.ndarray:
    """A seeded, sorted subset of `size` indices out of n (all when size is None or ≥ n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def training_subset(tensors: TensorData, size: int | None, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """A seeded subset of the training inputs: (sorted row indices, inputs)."""
    rows = subset_indices(len(tensors.y_train), size, seed)
    return rows, tensors.x_train[torch.from_numpy(rows).to(tensors.x_train.device)]


def with_training_subset(tensors: TensorData, size: int | None, seed: int) -> TensorData:
    """`tensors` with a seeded subset of `size` training samples (all when None) and the whole test set."""
    rows, x = training_subset(tensors, size, seed)
    return replace(tensors, x_train=x, y_train=tensors.y_train[torch.from_numpy(rows).to(x.device)])


def evaluation_set(
    tensors: TensorData,
    arrays: Arrays,
    name: str,
    train_subset: int | None,
    seed: int,
    corrupted_path: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and true labels of an evaluation set: `test`, a seeded subset of `train`, or a corrupted
    test set `<corruption>-<severity>` from the `{dataset}-c.h5` file at `corrupted_path`, normalised
    like `test` (`input_normalizer`)."""
    if name == "test":
        return tensors.x_test, tensors.y_test
    if name == "train":
        rows, x = training_subset(tensors, train_subset, seed)
        return x, torch.as_tensor(arrays.y_train[rows], device=x.device)
    parsed = parse_corrupted_set(name)
    if parsed is None:
        raise ValueError(
            f"unknown evaluation set {name!r}; available: ['test', 'train'] or a corrupted test set "
            "named <corruption>-<severity>, e.g. 'gaussian_blur-5'"
        )
    if corrupted_path is None:
        raise ValueError(f"evaluation set {name!r} is a corrupted test set: pass the path of its -c.h5 file")
    x, y = read_corrupted_set(corrupted_path, *parsed)
    mean, std = input_normalizer(arrays)
    device = tensors.x_test.device
    return normalize(x, mean, std).to(device), torch.as_tensor(y, dtype=torch.long, device=device)


# --- corrupted test sets -----------------------------------------------------------------------
# Layout of `results/data/{dataset}-c.h5` (written by featdyn.corrupted_sets): root dataset `y` (the test
# labels), one group `/{corruption}/{severity}` per corrupted set holding `x` in the raw format of
# the clean file (uint8 (N, C, H, W) images, float32 (N, L) signals), attributes `corruptions`
# (list of names) and `severities` (list of ints).

CORRUPTED_SET_NAME = re.compile(r"^(?P<corruption>[a-z0-9_]+)-(?P<severity>[1-9][0-9]*)$")


def corrupted_set_name(corruption: str, severity: int) -> str:
    """The evaluation-set name of a corrupted test set, e.g. `gaussian_blur-5`."""
    return f"{corruption}-{severity}"


def parse_corrupted_set(name: str) -> tuple[str, int] | None:
    """(corruption, severity) of an evaluation-set name like `gaussian_blur-5`; None for other names."""
    match = CORRUPTED_SET_NAME.match(name)
    return None if match is None else (match["corruption"], int(match["severity"]))


def corrupted_sets(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Every (corruption, severity) stored in a `{dataset}-c.h5` file, in the file's order."""
    with open_h5(path, ("y",), attrs=("corruptions", "severities")) as f:
        return [
            (str(c), int(s))
            for c in f.attrs["corruptions"]
            for s in f.attrs["severities"]
            if f"{c}/{s}/x" in f
        ]


def read_corrupted_set(
    path: str | os.PathLike, corruption: str, severity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs and labels (x, y) of one corrupted test set of a `{dataset}-c.h5` file."""
    key = f"{corruption}/{severity}/x"
    with open_h5(path, ("y",)) as f:
        if key in f:
            return f[key][()], f["y"][()]
    available = [corrupted_set_name(c, s) for c, s in corrupted_sets(path)]
    raise UnusableInputError(
        path, f"has no corrupted set {corrupted_set_name(corruption, severity)!r} (it has {available})"
    )
