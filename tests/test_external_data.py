import struct

import numpy as np
import pytest
from PIL import Image

from featdyn.config import dataset_entry
from featdyn.data import DatasetUnavailable, is_external_source, read_dataset, tensor_data, write_dataset
from featdyn.external_data import (
    DatasetLayoutError,
    describe_external,
    fetch_external,
    image_folder,
    npz_arrays,
)


def entry(source, mirror_dirs=(), **options):
    """A `datasets` entry with the schema's defaults filled, as the download rule passes it."""
    return dataset_entry(source, list(mirror_dirs), **options)


def _write_tree(root, sizes=None, classes=("cat", "dog", "emu"), n=(3, 2), seed=0):
    """train/ and test/ with RGB PNGs of random pixels; returns {(split, class): [arrays in file order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in zip(("train", "test"), n):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                h, w = (sizes or {}).get((split, c, i), (6, 5))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"img{i}.png")
                written.setdefault((split, c), []).append(pixels)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return written


def test_folder_round_trip_rgb(tmp_path):
    written = _write_tree(tmp_path / "tree")
    arrays = fetch_external("folder", entry("folder", path=str(tmp_path / "tree")), tmp_path / "cache")
    assert arrays.classes == 3 and arrays.source == "folder"
    assert arrays.x_train.dtype == np.uint8 and arrays.x_train.shape == (9, 3, 6, 5)
    np.testing.assert_array_equal(arrays.y_train, [0, 0, 0, 1, 1, 1, 2, 2, 2])  # sorted class names
    np.testing.assert_array_equal(arrays.y_test, [0, 0, 1, 1, 2, 2])
    expected = np.stack(written["train", "cat"] + written["train", "dog"] + written["train", "emu"])
    np.testing.assert_array_equal(arrays.x_train, expected.transpose(0, 3, 1, 2))  # PNG is lossless
    assert describe_external("folder", entry("folder", path=str(tmp_path / "tree"))) == (
        (3, 6, 5),
        3,
    )  # config time
    write_dataset(arrays, tmp_path / "d.h5", {"source": "folder"})
    back = read_dataset(tmp_path / "d.h5")
    np.testing.assert_array_equal(back.x_test, arrays.x_test)
    assert back.classes == 3 and tensor_data(back).x_train.shape == (9, 3, 6, 5)


def test_folder_greyscale_and_resize(tmp_path):
    written = _write_tree(tmp_path / "tree")
    grey = image_folder(tmp_path / "tree", channels=1)
    assert grey.x_train.shape == (9, 1, 6, 5)
    rgb = written["train", "cat"][0].astype(np.int64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000  # ITU-R 601-2, as PIL
    assert np.abs(grey.x_train[0, 0] - luma).max() <= 1
    resized = image_folder(tmp_path / "tree", size=[4, 3])
    assert resized.x_train.shape == (9, 3, 4, 3) and resized.x_test.shape == (6, 3, 4, 3)
    options = entry("folder", path=str(tmp_path / "tree"), size=[4, 3], channels=1)
    assert describe_external("folder", options) == ((1, 4, 3), 3)


def test_folder_errors_name_what_is_wrong(tmp_path):
    _write_tree(tmp_path / "no_test")
    for p in sorted((tmp_path / "no_test" / "test").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / "no_test" / "test").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"has no `test/` folder"):
        image_folder(tmp_path / "no_test")
    _write_tree(tmp_path / "empty")
    (tmp_path / "empty" / "train" / "fox").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"class folder .*train/fox holds no images"):
        image_folder(tmp_path / "empty")
    _write_tree(tmp_path / "extra")
    (tmp_path / "extra" / "test" / "yak").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"classes \['yak'\] that .*train does not have"):
        image_folder(tmp_path / "extra")
    _write_tree(tmp_path / "sizes", sizes={("train", "dog", 1): (7, 7)})
    with pytest.raises(DatasetLayoutError, match=r"different sizes .*`size`"):
        image_folder(tmp_path / "sizes")
    assert image_folder(tmp_path / "sizes", size=6).x_train.shape == (9, 3, 6, 6)
    _write_tree(tmp_path / "broken")
    (tmp_path / "broken" / "test" / "dog" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DatasetLayoutError, match=r"cannot read image .*dog/bad.png"):
        image_folder(tmp_path / "broken")


def _signals(rng, n, classes=3):
    return rng.standard_normal((n, 12)), np.arange(n) % classes


def test_npz_signals_and_images_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    (xtr, ytr), (xte, yte) = _signals(rng, 9), _signals(rng, 6)
    np.savez(tmp_path / "s.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte.astype(np.float64))
    arrays = fetch_external("arrays", entry("arrays", path=str(tmp_path / "s.npz")), tmp_path)
    assert arrays.x_train.dtype == np.float32 and arrays.y_test.dtype == np.int64 and arrays.classes == 3
    np.testing.assert_array_equal(arrays.x_train, xtr.astype(np.float32))
    np.testing.assert_array_equal(arrays.y_test, yte)
    nhwc = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    np.savez(tmp_path / "i.npz", x_train=nhwc, y_train=[0, 1, 0, 1], x_test=nhwc[:2], y_test=[1, 0])
    images = npz_arrays(tmp_path / "i.npz")
    np.testing.assert_array_equal(images.x_train, nhwc.transpose(0, 3, 1, 2))
    for name, arrays_ in (("s", arrays), ("i", images)):  # config time: headers and labels only
        described = describe_external("arrays", entry("arrays", path=str(tmp_path / f"{name}.npz")))
        assert described == (arrays_.sample_shape, arrays_.classes)
    np.savez(tmp_path / "g.npz", x_train=grey, y_train=[0, 1, 0, 1], x_test=grey, y_test=[0, 1, 1, 1])
    assert npz_arrays(tmp_path / "g.npz").x_train.shape == (4, 1, 5, 6)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"drop": "y_test"}, r"lacks the arrays \['y_test'\]"),
        ({"y_train": np.arange(8) % 3}, r"y_train has shape \(8,\) for 9 samples"),
        ({"x_test": np.zeros((6, 11))}, r"train samples have shape \(12,\), test samples \(11,\)"),
        ({"y_test": np.array([0, 1, 2, 0, 1, 5])}, r"y_test has labels outside 0..2 \(min 0, max 5\)"),
        ({"y_train": np.arange(9) % 3 + 0.5}, r"y_train: labels are not whole numbers"),
        ({"y_train": np.array(list("abcabcabc"))}, r"y_train: labels have dtype <U1"),
        ({"y_train": np.arange(9) % 2}, r"classes \[2\] of 0..2 have no training samples"),
    ],
    ids=["missing key", "length", "sample shape", "range", "non-integer", "strings", "empty class"],
)
def test_npz_errors(tmp_path, change, message):
    rng = np.random.default_rng(0)
    (xtr, ytr), (xte, yte) = _signals(rng, 9), _signals(rng, 6)
    contents = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}
    contents.pop(change.pop("drop", None), None)
    contents.update(change)
    np.savez(tmp_path / "bad.npz", **contents)
    with pytest.raises(DatasetLayoutError, match=message):
        npz_arrays(tmp_path / "bad.npz", classes=3)


def _write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # idx: unsigned bytes, then the number of axes
    path.write_bytes(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes())


def test_torchvision_class_from_a_mirror_folder(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "mirror" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 20), ("t10k", 10))}
    labels = {"train": np.arange(20, dtype=np.uint8) % 10, "t10k": np.arange(10, dtype=np.uint8)[::-1].copy()}
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    arrays = fetch_external(
        "torchvision:MNIST", entry("torchvision:MNIST", [str(tmp_path / "mirror")]), tmp_path / "cache"
    )
    assert arrays.classes == 10 and arrays.source == "torchvision:MNIST"
    np.testing.assert_array_equal(arrays.x_train, images["train"][:, None])
    np.testing.assert_array_equal(arrays.y_test, labels["t10k"])
    resized = fetch_external(
        "torchvision:MNIST",
        entry("torchvision:MNIST", [str(tmp_path / "mirror")], size=14, channels=3),
        tmp_path,
    )
    assert resized.x_train.shape == (20, 3, 14, 14)
    with pytest.raises(DatasetUnavailable, match=r"MNIST \(train split\) was not found .*download: true"):
        fetch_external(
            "torchvision:MNIST", entry("torchvision:MNIST", [str(tmp_path / "nowhere")]), tmp_path / "cache"
        )


def test_torchvision_class_with_split_kwargs():
    options = entry(
        "torchvision:FakeData",
        kwargs={"image_size": [1, 6, 6], "num_classes": 3, "size": 30},
        split_kwargs={"train": {"random_offset": 0}, "test": {"random_offset": 1000}},
    )
    assert is_external_source("torchvision:FakeData")
    arrays = fetch_external("torchvision:FakeData", options, "unused")
    assert arrays.x_train.shape == (30, 1, 6, 6) and arrays.x_train.dtype == np.uint8 and arrays.classes == 3
    assert not np.array_equal(arrays.x_train, arrays.x_test)
    with pytest.raises(DatasetLayoutError, match="neither `train` nor `split`"):
        fetch_external(
            "torchvision:FakeData", entry("torchvision:FakeData", kwargs=options["kwargs"]), "unused"
        )
    with pytest.raises(ValueError, match="no class 'NoSuchSet'.*'MNIST'"):
        fetch_external("torchvision:NoSuchSet", entry("torchvision:NoSuchSet"), "unused")
