import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from featdyn.config import dataset_entry
from featdyn.data import (
    DatasetUnavailable,
    download_to,
    fetch,
    noisy_labels,
    read_dataset,
    sample_shape,
    subset_indices,
    tensor_data,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_mnist1d_shapes_and_sample_count(tmp_path):
    arrays = fetch("mnist1d", dataset_entry("mnist1d", num_samples=500), tmp_path)
    assert arrays.x_train.shape == (400, 40) and arrays.x_test.shape == (100, 40)
    assert arrays.x_train.dtype == np.float32 and arrays.classes == 10
    assert set(np.unique(arrays.y_train)) <= set(range(10))


def test_digits_split_is_stratified_and_uint8(tmp_path):
    arrays = fetch("digits", dataset_entry("digits", test_fraction=0.2), tmp_path)
    assert arrays.x_train.shape[1:] == (1, 8, 8) and arrays.x_train.dtype == np.uint8
    assert len(arrays.y_train) + len(arrays.y_test) == 1797
    assert np.bincount(arrays.y_test).min() >= 30


def test_hdf5_round_trip(tmp_path):
    path = tmp_path / "digits.h5"
    arrays = download_to("digits", dataset_entry("digits"), path)
    back = read_dataset(path)
    assert np.array_equal(back.x_train, arrays.x_train) and np.array_equal(back.y_test, arrays.y_test)


def test_label_noise_is_seeded_and_of_the_right_size():
    y = np.arange(1000) % 10
    a, mask_a = noisy_labels(y, 0.4, 10, seed=3)
    b, mask_b = noisy_labels(y, 0.4, 10, seed=3)
    c, _ = noisy_labels(y, 0.4, 10, seed=4)
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b) and not np.array_equal(a, c)
    assert mask_a.sum() == 400
    assert np.array_equal(a[~mask_a], y[~mask_a])
    # uniformly random labels: about 1/10 of the noisy ones keep their class by chance
    assert 0.03 < np.mean(a[mask_a] == y[mask_a]) < 0.2


def test_no_noise_keeps_labels():
    y = np.arange(50) % 10
    labels, mask = noisy_labels(y, 0.0, 10, seed=0)
    assert np.array_equal(labels, y) and not mask.any()


def test_tensor_data_normalises_with_training_statistics(tmp_path):
    data = tensor_data(fetch("digits", dataset_entry("digits"), tmp_path))
    assert abs(float(data.x_train.mean())) < 1e-4
    assert abs(float(data.x_train.std()) - 1) < 1e-2


def test_subset_indices_are_seeded_and_sorted():
    a = subset_indices(100, 10, 1)
    assert np.array_equal(a, subset_indices(100, 10, 1)) and np.all(np.diff(a) > 0)
    assert len(subset_indices(100, None, 1)) == 100


@pytest.fixture
def loopback_mirror():
    """An HTTP server on 127.0.0.1 serving the Debian Fashion-MNIST files."""
    if not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FASHION))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_fashion_mnist_downloads_through_the_torchvision_path(tmp_path, loopback_mirror, monkeypatch):
    monkeypatch.setattr("featdyn.data.DEBIAN_DATASET_DIRS", {})  # force a real download
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in FASHION.glob("*.gz")}  # Debian re-gzipped
    options = dataset_entry("fashion_mnist", mirrors=[loopback_mirror], md5=md5)
    arrays = download_to("fashion_mnist", options, tmp_path / "f.h5", tmp_path / "cache")
    assert arrays.x_train.shape == (60000, 1, 28, 28) and arrays.x_test.shape == (10000, 1, 28, 28)
    assert (tmp_path / "cache/fashion_mnist/FashionMNIST/raw/train-images-idx3-ubyte.gz").exists()
    assert read_dataset(tmp_path / "f.h5").classes == 10


def test_offline_without_local_copy_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setattr("featdyn.data.DEBIAN_DATASET_DIRS", {})
    with pytest.raises(DatasetUnavailable, match="mirror_dirs") as err:
        fetch(
            "fashion_mnist",
            dataset_entry("fashion_mnist", [str(tmp_path / "m")], mirrors=["http://127.0.0.1:9/"]),
            tmp_path,
        )
    assert "train-images-idx3-ubyte.gz" in str(err.value) and "fashion_mnist" in str(err.value)


def test_local_mirror_folder_is_used_before_downloading(tmp_path, monkeypatch):
    if not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setattr("featdyn.data.DEBIAN_DATASET_DIRS", {})
    mirror = tmp_path / "mirror" / "fashion_mnist"
    mirror.mkdir(parents=True)
    for f in FASHION.glob("*.gz"):
        (mirror / f.name).symlink_to(f)
    options = dataset_entry("fashion_mnist", [str(tmp_path / "mirror")], mirrors=["http://127.0.0.1:9/"])
    assert fetch("fashion_mnist", options, tmp_path / "cache").x_test.shape[0] == 10000


def test_subsets_and_padding_are_applied_when_the_file_is_written(tmp_path):
    options = dataset_entry("digits", train_samples=100, test_samples=50, pad_to=12)
    arrays = download_to("digits", options, tmp_path / "d.h5")
    full = fetch("digits", dataset_entry("digits"), tmp_path)
    assert arrays.x_train.shape == (100, 1, 12, 12) and arrays.x_test.shape == (50, 1, 12, 12)
    stored = read_dataset(tmp_path / "d.h5")
    np.testing.assert_array_equal(stored.x_train, arrays.x_train)
    assert (stored.x_train[:, :, :2] == 0).all() and (stored.x_train[:, :, -2:] == 0).all()
    rows = subset_indices(len(full.y_train), 100, options["seed"])  # the documented seeded subset
    np.testing.assert_array_equal(stored.x_train[:, :, 2:10, 2:10], full.x_train[rows])
    np.testing.assert_array_equal(stored.y_train, full.y_train[rows])
    assert sample_shape(options) == (1, 12, 12)
    with pytest.raises(ValueError, match="smaller than the images"):
        download_to("digits", dataset_entry("digits", pad_to=6), tmp_path / "e.h5")
