"""Datasets from outside featdyn → `featdyn.data.Arrays` (same layout as the built-in fetchers).

Sources (dataset config key `source`):

- `folder`: an image-folder tree `path/train/<class>/*.png` and `path/test/<class>/*.png`; classes
  are the sorted subfolder names of `train/`; images are converted to greyscale (`channels: 1`) or
  RGB (`channels: 3`, the default) and resized to `size` (`[H, W]` or one int; optional when every
  image has the same size);
- `arrays`: an `.npz` file with `x_train`, `y_train`, `x_test`, `y_test`;
- `torchvision:<ClassName>`: any torchvision dataset class, read from the local mirror folders
  (`mirror_dirs`, also their `<ClassName>` subfolders) and downloaded only with `download: true`.

Layout conventions of `Arrays` (featdyn.data): images are uint8 (N, C, H, W), signals float32 (N, L)
or (N, C, L); labels int64 in 0..classes-1, every class present in the training split.
"""

from __future__ import annotations

import inspect
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featdyn.data import EXTERNAL_SOURCES, Arrays, DatasetUnavailable, _as_arrays

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetLayoutError(ValueError):
    """Dataset files that do not have the expected layout or contents."""


def fetch_external(source: str, options: Mapping[str, Any], cache_dir: str | os.PathLike) -> Arrays:
    """Fetch an outside dataset (see the module docstring for `source` and its options); `options` is
    its `datasets` entry with the schema's defaults filled (`featdyn.config.dataset_entry`)."""
    if source == "folder":
        return image_folder(_required_path(options, source), options["size"], _folder_channels(options))
    if source == "arrays":
        classes = options["classes"]
        return npz_arrays(_required_path(options, source), None if classes is None else int(classes))
    if source.startswith("torchvision:"):
        return torchvision_dataset(source.partition(":")[2], options, Path(cache_dir))
    raise ValueError(f"unknown outside dataset source {source!r}; available: {list(EXTERNAL_SOURCES)}")


def _folder_channels(options: Mapping[str, Any]) -> int:
    """Channels of an image folder: the `channels` option, RGB (3) when it is null."""
    return 3 if options["channels"] is None else int(options["channels"])


def _required_path(options: Mapping[str, Any], source: str) -> Path:
    if options["path"] is None:
        raise DatasetLayoutError(f"dataset source {source!r} needs the option `path`")
    return Path(options["path"]).expanduser()


# --- checks -----------------------------------------------------------------------------------------


def check_arrays(arrays: Arrays, where: str) -> Arrays:
    """Raise `DatasetLayoutError` unless `arrays` follows the `Arrays` conventions."""
    for split, x, y in (("train", arrays.x_train, arrays.y_train), ("test", arrays.x_test, arrays.y_test)):
        if x.ndim < 2:
            raise DatasetLayoutError(f"{where}: x_{split} has shape {x.shape}; expected (N, ...) samples")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetLayoutError(
                f"{where}: y_{split} has shape {y.shape} for {len(x)} samples in x_{split}; "
                f"expected ({len(x)},)"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetLayoutError(
                f"{where}: y_{split} has dtype {y.dtype}; labels are integer class indices"
            )
        if len(y) and (y.min() < 0 or y.max() >= arrays.classes):
            raise DatasetLayoutError(
                f"{where}: y_{split} has labels outside 0..{arrays.classes - 1} "
                f"(min {y.min()}, max {y.max()})"
            )
    if arrays.x_train.shape[1:] != arrays.x_test.shape[1:]:
        raise DatasetLayoutError(
            f"{where}: train samples have shape {arrays.x_train.shape[1:]}, "
            f"test samples {arrays.x_test.shape[1:]}"
        )
    if arrays.x_train.dtype != arrays.x_test.dtype:
        raise DatasetLayoutError(
            f"{where}: x_train is {arrays.x_train.dtype}, x_test is {arrays.x_test.dtype}"
        )
    empty = sorted(set(range(arrays.classes)) - set(np.unique(arrays.y_train).tolist()))
    if empty:
        raise DatasetLayoutError(
            f"{where}: classes {empty} of 0..{arrays.classes - 1} have no training samples"
        )
    return arrays


def integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64; float labels must hold whole numbers."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y)):
            raise DatasetLayoutError(
                f"{where}: labels are not whole numbers (e.g. {y[y != np.round(y)][:3]})"
            )
    elif not np.issubdtype(y.dtype, np.integer):
        raise DatasetLayoutError(f"{where}: labels have dtype {y.dtype}; expected integer class indices")
    return y.astype(np.int64)


# --- .npz arrays --------------------------------------------------------------------------------------


def npz_arrays(path: str | os.PathLike, classes: int | None = None) -> Arrays:
    """x_train, y_train, x_test, y_test from an `.npz` file, in the `Arrays` layout: 2-D or 3-D float
    inputs are signals (float32); uint8 inputs are images, (N, H, W) greyscale or (N, C, H, W), with
    channels-last (N, H, W, C) moved to channels-first; 4-D float inputs stay float32 images."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"dataset file {path} does not exist")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise DatasetLayoutError(f"{path} lacks the arrays {missing} (it has {sorted(f.files)})")
        raw = {k: f[k] for k in NPZ_KEYS}
    x_train, x_test = (_sample_layout(raw[k], f"{path}: {k}") for k in ("x_train", "x_test"))
    y_train, y_test = (integer_labels(raw[k], f"{path}: {k}") for k in ("y_train", "y_test"))
    k = int(max(y_train.max(initial=0), y_test.max(initial=0)) + 1) if classes is None else classes
    return check_arrays(Arrays(x_train, y_train, x_test, y_test, k, "arrays"), str(path))


def _layout(shape: tuple[int, ...], dtype: np.dtype, where: str) -> str:
    """How an input array maps to the `Arrays` layout: `grey` (N, H, W) uint8, `nhwc` uint8,
    `nchw` uint8, or `float` (kept, as float32)."""
    if len(shape) < 2:
        raise DatasetLayoutError(f"{where} has shape {shape}; expected (N, ...) samples")
    if dtype == np.uint8:
        if len(shape) == 3:
            return "grey"
        if len(shape) == 4:
            return "nhwc" if shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "nchw"
        raise DatasetLayoutError(f"{where} has uint8 shape {shape}; images are (N, H, W) or (N, C, H, W)")
    if np.issubdtype(dtype, np.number) and len(shape) <= 4:
        return "float"
    raise DatasetLayoutError(f"{where} has dtype {dtype} and shape {shape}; expected numbers, ≤ 4 axes")


def _sample_layout(x: np.ndarray, where: str) -> np.ndarray:
    layout = _layout(x.shape, x.dtype, where)
    if layout == "grey":
        return np.ascontiguousarray(x[:, None])
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x if layout == "nchw" else np.ascontiguousarray(x, dtype=np.float32)


def _sample_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    if layout == "grey":
        return (1, *shape[1:])
    if layout == "nhwc":
        return (shape[3], shape[1], shape[2])
    return tuple(shape[1:])


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an `.npz` file, from the `.npy` headers alone."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
            headers[member.removesuffix(".npy")] = (tuple(shape), dtype)
    return headers


# --- shapes at config time ---------------------------------------------------------------------------


def count_external(source: str, options: Mapping[str, Any]) -> tuple[int, int] | None:
    """(training, test) samples of an outside dataset, cheaply: `.npy` headers or image files counted;
    None where only reading the data would tell (a torchvision class, a path not there yet)."""
    path = None if options["path"] is None else Path(options["path"]).expanduser()
    if source == "arrays" and path is not None and path.is_file():
        headers = _npz_headers(path)
        return headers["y_train"][0][0], headers["y_test"][0][0]
    if source == "folder" and path is not None and path.is_dir():
        return tuple(
            sum(1 for f in (path / split).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            for split in ("train", "test")
        )
    return None


def describe_external(source: str, options: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(sample shape, number of classes) of an outside dataset, cheaply (for config checks): folder
    names and one image, `.npy` headers and labels, or the `size`/`channels`/`classes` options."""
    if source == "folder":
        root = _required_path(options, source) / "train"
        classes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not classes:
            raise DatasetLayoutError(f"{root} has no class subfolders")
        channels = _folder_channels(options)
        if options["size"] is not None:
            return (channels, *_size(options["size"])), len(classes)
        first = next(
            (f for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES), None
        )
        if first is None:
            raise DatasetLayoutError(f"{root} holds no images")
        return (channels, *_read_image(first, {1: "L", 3: "RGB"}[channels], None).shape[:2]), len(classes)
    if source == "arrays":
        path = _required_path(options, source)
        shape, dtype = _npz_headers(path)["x_train"]
        sample = _sample_shape(shape, _layout(shape, dtype, f"{path}: x_train"))
        if options["classes"] is not None:
            return sample, int(options["classes"])
        with np.load(path, allow_pickle=False) as f:
            return sample, int(max(f["y_train"].max(initial=0), f["y_test"].max(initial=0)) + 1)
    if source.startswith("torchvision:"):
        if all(options[k] is not None for k in ("size", "channels", "classes")):
            return (int(options["channels"]), *_size(options["size"])), int(options["classes"])
        raise DatasetLayoutError(
            f"dataset {source!r}: give the options `size`, `channels` and `classes` so that the sample shape "
            "is known before the data is read"
        )
    raise ValueError(f"unknown outside dataset source {source!r}; available: {list(EXTERNAL_SOURCES)}")


# --- image folders ------------------------------------------------------------------------------------


def image_folder(
    path: str | os.PathLike, size: int | Sequence[int] | None = None, channels: int = 3
) -> Arrays:
    """An image-folder tree with `train/` and `test/`, one subfolder per class, as uint8 (N, C, H, W)."""
    root = Path(path)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetLayoutError(
                f"image folder {root} has no `{split}/` folder (expected {root / split}/<class>/)"
            )
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DatasetLayoutError(f"{root / 'train'} has no class subfolders")
    unknown = sorted(p.name for p in (root / "test").iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise DatasetLayoutError(f"{root / 'test'} has classes {unknown} that {root / 'train'} does not have")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DatasetLayoutError(
            f"channels is {channels}; image folders are read as 1 (greyscale) or 3 (RGB)"
        )
    target = None if size is None else _size(size)
    splits = [_read_split(root / split, classes, mode, target) for split in ("train", "test")]
    (x_train, y_train), (x_test, y_test) = splits
    return check_arrays(Arrays(x_train, y_train, x_test, y_test, len(classes), "folder"), str(root))


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(h), int(w)


def _read_split(
    folder: Path, classes: Sequence[str], mode: str, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DatasetLayoutError(f"{folder} holds images outside class subfolders: {sorted(loose)[:3]}")
    images, labels = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue  # a class may be absent from the test split
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetLayoutError(
                f"class folder {class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        images += [_read_image(f, mode, size) for f in files]
        labels += [label] * len(files)
    if not images:
        raise DatasetLayoutError(f"{folder} holds no images")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DatasetLayoutError(
            f"images in {folder} have different sizes {sorted(shapes)[:3]}: set the dataset option `size`"
        )
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


def _read_image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _convert_image(im, mode, size)
    except OSError as err:
        raise DatasetLayoutError(f"cannot read image {path}: {err}") from err


def _convert_image(im: Any, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image in `mode` (L or RGB), bilinearly resized to (H, W) `size`, as uint8 (H, W[, C])."""
    from PIL import Image

    im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# --- torchvision dataset classes -------------------------------------------------------------------------


def torchvision_dataset(class_name: str, options: Mapping[str, Any], cache_dir: Path) -> Arrays:
    """Train and test split of `torchvision.datasets.<class_name>` as `Arrays`.

    Options: `mirror_dirs` (folders tried as `root`, also their `<class_name>` subfolders),
    `download` (default false; downloads into the cache folder), `kwargs` (passed to the class),
    `split_kwargs` ({train: {...}, test: {...}}, default `train=True/False` or `split="train"/"test"`
    from the class signature), `size` and `channels` (convert images), `classes`.
    """
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name, None)
    if not isinstance(cls, type):
        available = sorted(n for n in tvd.__all__ if isinstance(getattr(tvd, n, None), type))
        raise ValueError(f"torchvision.datasets has no class {class_name!r}; available: {available}")
    params = inspect.signature(cls).parameters
    split_kwargs = options["split_kwargs"] or _default_split_kwargs(class_name, params)
    common = dict(options["kwargs"])
    parts = [
        _open_split(cls, params, {**common, **split_kwargs[split]}, options, cache_dir, split)
        for split in ("train", "test")
    ]
    size = None if options["size"] is None else _size(options["size"])
    channels = options["channels"]
    (x_train, y_train), (x_test, y_test) = (_dataset_arrays(p, size, channels, class_name) for p in parts)
    classes = options["classes"] or len(getattr(parts[0], "classes", ())) or int(y_train.max() + 1)
    arrays = Arrays(x_train, y_train, x_test, y_test, int(classes), f"torchvision:{class_name}")
    return check_arrays(arrays, f"torchvision.datasets.{class_name}")


def _default_split_kwargs(
    class_name: str, params: Mapping[str, inspect.Parameter]
) -> dict[str, dict[str, Any]]:
    if "train" in params:
        return {"train": {"train": True}, "test": {"train": False}}
    if "split" in params:
        return {"train": {"split": "train"}, "test": {"split": "test"}}
    raise DatasetLayoutError(
        f"torchvision.datasets.{class_name} takes neither `train` nor `split`: give the dataset option "
        "`split_kwargs: {train: {...}, test: {...}}`"
    )


def _open_split(
    cls: type,
    params: Mapping[str, inspect.Parameter],
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any],
    cache_dir: Path,
    split: str,
) -> Any:
    """The dataset object of one split: from the first mirror folder that has it, else downloaded."""
    if "root" not in params:
        return cls(**kwargs)
    name = cls.__name__
    roots = [r for d in options["mirror_dirs"] for r in (Path(d) / name, Path(d))]
    errors = []
    for root in roots:
        if root.is_dir():
            try:
                return cls(root=str(root), **kwargs, **({"download": False} if "download" in params else {}))
            except Exception as err:  # torchvision raises RuntimeError (missing files) or others
                errors.append(f"{root}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    if options["download"] and "download" in params:
        try:
            return cls(root=str(cache_dir / name), download=True, **kwargs)
        except Exception as err:
            errors.append(f"download into {cache_dir / name}: {type(err).__name__}: {err}")
    tried = "; ".join(errors) or "no mirror folder exists"
    raise DatasetUnavailable(
        f"torchvision dataset {name} ({split} split) was not found in the mirror folders "
        f"{[str(r) for r in roots]} ({tried}); put its files there (config key `mirror_dirs`)"
        + ("" if options["download"] else ", or allow downloading with `download: true`")
    )


def _dataset_arrays(
    ds: Any, size: tuple[int, int] | None, channels: int | None, class_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a torchvision dataset: from its array attributes where it has them, else sample by
    sample; images converted to `channels` and resized to `size` when these are given."""
    data = getattr(ds, "data", None)
    has_labels = getattr(ds, "targets", None) is not None or getattr(ds, "labels", None) is not None
    if hasattr(data, "ndim") and data.ndim in (3, 4) and has_labels and size is None and channels is None:
        x, y = _as_arrays(ds)
        return x, integer_labels(y, class_name)
    mode = {None: None, 1: "L", 3: "RGB"}[channels]
    images, labels = [], []
    for i in range(len(ds)):
        image, label = ds[i]
        image = _as_pil(image)
        images.append(_convert_image(image, mode or image.mode, size))
        labels.append(label)
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), integer_labels(np.asarray(labels), class_name)


def _as_pil(image: Any) -> Any:
    """A dataset sample as a greyscale or RGB PIL image (PIL images pass through)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return image if image.mode in ("L", "RGB") else image.convert("RGB")
