"""Phase-diagram cells on tiny data, label+input noise, cell naming, dataset resolution and aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_arrays

import featdyn.phase as phase
import featdyn.planning as planning
from featdyn.config import ConfigError, effective_config
from featdyn.data import Arrays
from featdyn.phase import (
    CellSettings,
    aggregate_cells,
    cell_file_stem,
    cell_name,
    cell_settings,
    cell_table,
    load_shape,
    mean_load_dynamics,
    noisy_epoch_data,
    phase_data,
    read_cell,
    run_cell,
    write_cell,
)
from featdyn.planning import phase_dataset, phase_grid

TINY = CellSettings(
    n_train=120, epochs=4, lr=0.02, batch_size=30, width=16, n_hidden=3, curve_every=1, eval_batch_size=256
)


def direct_d(x: np.ndarray, labels: np.ndarray) -> float:
    """log(Tr Σ_w / Tr Σ_b) straight from docs/definitions.md §9 with NumPy."""
    x = x.reshape(len(x), -1).astype(np.float64)
    mean = x.mean(0)
    within = between = 0.0
    for c in np.unique(labels):
        xc = x[labels == c]
        within += ((xc - xc.mean(0)) ** 2).sum()
        between += len(xc) * ((xc.mean(0) - mean) ** 2).sum()
    return float(np.log(within / between))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP threads crawl on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_cell() -> tuple[phase.TensorData, phase.CellResult]:
    data = phase_data(tiny_arrays(n_train=240, n_test=120), TINY, seed=0)
    return data, run_cell(data, TINY.at("label_noise", 0.2), alpha=0.2, seeds=[0, 1])


def test_cell_on_tiny_data_returns_sane_outputs(tiny_cell) -> None:
    data, result = tiny_cell
    n_layers = TINY.n_hidden + 2  # input, hidden layers, logits
    np.testing.assert_array_equal(result.seeds, [0, 1])
    np.testing.assert_array_equal(result.curve_epochs, np.arange(5))
    assert result.train_D.shape == result.train_he_su.shape == (2, 5, n_layers)
    assert result.test_D.shape == (2, n_layers) and result.epoch_loss.shape == (2, 4)
    assert np.all(np.isfinite(result.train_D)) and np.all(np.isfinite(result.epoch_loss))
    x, y = data.x_train.numpy(), data.y_train.numpy()
    np.testing.assert_allclose(result.train_D[:, :, 0], direct_d(x, y), rtol=1e-6)  # the input never changes
    assert result.test_D[0, 0] == pytest.approx(direct_d(data.x_test.numpy(), data.y_test.numpy()), rel=1e-6)
    hidden = result.train_D[:, -1, :-1]
    expected = (hidden[:, 2:] - 2 * hidden[:, 1:-1] + hidden[:, :-2]).mean(1)
    np.testing.assert_allclose(result.curvature, expected, rtol=1e-9)
    assert np.all(result.train_acc > 0.5) and np.all(result.test_acc > 0.4)  # chance: 0.1
    assert np.all(result.train_D[:, -1, -1] < result.train_D[:, 0, -1])  # training separates the logits


def test_cell_replays_exactly_and_seeds_differ(tiny_cell) -> None:
    data, result = tiny_cell
    again = run_cell(data, TINY.at("label_noise", 0.2), alpha=0.2, seeds=[1])
    np.testing.assert_array_equal(again.train_D[0], result.train_D[1])
    np.testing.assert_array_equal(again.epoch_loss[0], result.epoch_loss[1])
    assert not np.allclose(result.epoch_loss[0], result.epoch_loss[1])


def test_cell_file_round_trip_and_tables(tiny_cell, tmp_path) -> None:
    _, result = tiny_cell
    write_cell(result, tmp_path / "cell.h5", {"cell": "label_noise-0.2", "alpha": 0.2})
    back, provenance = read_cell(tmp_path / "cell.h5")
    assert provenance == {"cell": "label_noise-0.2", "alpha": 0.2}
    for key, value in vars(result).items():
        np.testing.assert_array_equal(getattr(back, key), value)
    table = cell_table(back, "label_noise", 0.2, 0.2)
    assert len(table) == 2 and list(table["seed"]) == [0, 1]
    np.testing.assert_array_equal(table[[f"D_{layer}" for layer in range(5)]], result.train_D[:, -1])
    epochs, mean_curves = mean_load_dynamics(back)
    np.testing.assert_array_equal(epochs, np.arange(5))
    np.testing.assert_allclose(mean_curves, result.train_D.mean(0))


def test_label_and_input_noise_is_fresh_per_epoch_and_sized_by_level() -> None:
    data = phase_data(tiny_arrays(n_train=2000, n_test=10), CellSettings(n_train=2000), seed=0)
    assert noisy_epoch_data(data, 0.0, 1.0, seed=0, epoch=1) is data
    noisy = noisy_epoch_data(data, 0.5, 2.0, seed=3, epoch=1)
    changed = (noisy.y_train != data.y_train).float().mean().item()
    assert changed == pytest.approx(0.5 * 0.9, abs=0.03)  # a reset label is uniform: 1/10 keep their class
    added = (noisy.x_train - data.x_train).std().item()
    assert added == pytest.approx(0.5 * 2.0 * data.x_train.std().item(), rel=0.02)
    again = noisy_epoch_data(data, 0.5, 2.0, seed=3, epoch=1)
    torch.testing.assert_close(again.x_train, noisy.x_train)
    assert not torch.equal(noisy_epoch_data(data, 0.5, 2.0, seed=3, epoch=2).y_train, noisy.y_train)
    torch.testing.assert_close(noisy.x_test, data.x_test)  # test data stay clean


def test_cell_names_share_the_base_recipe_across_axes() -> None:
    base = CellSettings()
    assert cell_name(base, "lr", 0.001) == cell_name(base, "dropout", 0.0) == "base"
    assert cell_name(base, "lr", 1e-4) == "lr-0.0001"
    assert cell_file_stem(base, "dropout", 0.0, 1) == "base_a1"
    assert cell_file_stem(base, "batch_size", 64, 0.2) == "batch_size-64_a0.2"
    assert cell_settings(base, "lr-0.0001").lr == pytest.approx(1e-4)
    assert cell_settings(base, "batch_size-64").batch_size == 64
    assert cell_settings(base, "base") == base
    with pytest.raises(ValueError, match="unknown noise axis"):
        base.at("momentum", 0.9)
    section = {"axes": {"dropout": [0.0, 0.2]}, "alphas": [0, 1], "epochs": 7}
    assert phase_grid(section) == [
        ("dropout", 0.0, 0.0),
        ("dropout", 0.0, 1.0),
        ("dropout", 0.2, 0.0),
        ("dropout", 0.2, 1.0),
    ]


def test_images_are_resized_then_standardised() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 1, 28, 28), dtype=np.uint8)
    arrays = Arrays(images, rng.integers(0, 10, 50), images[:20], rng.integers(0, 10, 20), 10, "mnist")
    data = phase_data(arrays, CellSettings(n_train=30, image_size=10), seed=0)
    assert data.x_train.shape == (30, 1, 10, 10) and data.x_test.shape == (20, 1, 10, 10)
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.x_train.std().item() == pytest.approx(1.0, rel=1e-4)


def test_dataset_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(planning.DEBIAN_DATASET_DIRS, "fashion_mnist", str(tmp_path / "nowhere"))
    config = {
        "datasets": {"m1d": {"source": "mnist1d", "num_samples": 4000}},
        "phase": {"dataset": "auto"},
        "mirror_dirs": [],
        "cache_dir": str(tmp_path / "cache"),
    }
    assert phase_dataset(config) == ("m1d", {"source": "mnist1d", "num_samples": 4000})
    mirror = tmp_path / "mirror" / "fashion_mnist"
    mirror.mkdir(parents=True)
    for name in planning.TORCHVISION["fashion_mnist"].raw_files:
        (mirror / name).touch()
    config["mirror_dirs"] = [str(tmp_path / "mirror")]
    assert phase_dataset(config) == ("fashion_mnist", {"source": "fashion_mnist"})
    config["phase"]["dataset"] = "m1d"
    assert phase_dataset(config)[0] == "m1d"


def test_diverged_seeds_are_nan_and_left_out_of_the_means(monkeypatch) -> None:
    def diverge(*args, **kwargs):
        raise FloatingPointError("loss is nan")

    monkeypatch.setattr(phase, "train_epoch", diverge)
    data = phase_data(tiny_arrays(n_train=60, n_test=20), TINY, seed=0)
    result = run_cell(data, TINY, alpha=0.0, seeds=[0])
    assert np.isnan(result.curvature[0]) and np.isnan(result.test_acc[0])
    assert result.train_D.shape == (1, 5, TINY.n_hidden + 2)


def test_aggregation_means_over_seeds_and_labels_shapes() -> None:
    per_seed = pd.DataFrame(
        {
            "axis": ["lr"] * 5 + ["dropout"] * 2,
            "level": [0.01, 0.01, 0.01, 0.1, 0.1, 0.2, 0.2],
            "alpha": [0.0] * 7,
            "seed": [0, 1, 2, 0, 1, 0, 1],
            "curvature": [-0.2, -0.1, np.nan, 0.01, -0.03, 0.3, 0.1],
            "curvature_he_su": [0.0] * 7,
            "test_acc": [0.8, 0.7, np.nan, 0.9, 0.8, 0.5, 0.6],
            "train_acc": [1.0] * 7,
        }
    )
    table = aggregate_cells(per_seed, tolerance=0.05).set_index(["axis", "level"])
    assert table.loc[("lr", 0.01), "n_seeds"] == 3 and table.loc[("lr", 0.01), "n_diverged"] == 1
    assert table.loc[("lr", 0.01), "curvature"] == pytest.approx(-0.15)
    assert table.loc[("lr", 0.01), "test_acc"] == pytest.approx(0.75)
    assert table.loc[("lr", 0.1), "curvature_sd"] == pytest.approx(np.std([0.01, -0.03], ddof=1))
    assert list(table["shape"]) == ["concave", "linear", "convex"]  # axes in order of appearance
    assert list(load_shape(np.array([-1.0, 0.0, 1.0, np.nan]), 0.5)) == [
        "concave",
        "linear",
        "convex",
        "diverged",
    ]


def test_config_checks_name_the_key_and_the_allowed_values() -> None:
    base = {
        "datasets": {"m1d": {"source": "mnist1d"}},
        "recipes": {"sgd": {"optimizer": "sgd", "lr": 0.1, "batch_size": 10}},
        "runs": {"r": {"dataset": "m1d", "model": "mlp", "recipe": "sgd", "epochs": 1}},
        **{
            section: {"runs": []}
            for section in ("composite", "isotropy", "dynamics", "interventions", "surrogates", "ensembles")
        },
    }
    small = {"n_train": 100, "batch_size": 100}
    effective_config({**base, "phase": {**small, "axes": {"batch_size": [10, 100]}}})
    with pytest.raises(ConfigError, match=r"`phase.dataset`: 'imagenet' is not one of .*'fashion_mnist'"):
        effective_config({**base, "phase": {"dataset": "imagenet"}})
    with pytest.raises(ConfigError, match=r"`phase.axes.batch_size`: 200 .* at most phase.n_train = 100"):
        effective_config({**base, "phase": {**small, "axes": {"batch_size": [10, 200]}}})
    with pytest.raises(ConfigError, match=r"`phase.batch_size`: 2560 .* at most phase.n_train = 100"):
        effective_config({**base, "phase": {"n_train": 100}})
    with pytest.raises(ConfigError, match=r"`separation.runs`: 'other' is not one of .*\['r'\]"):
        effective_config({**base, "separation": {"runs": ["other"]}})
