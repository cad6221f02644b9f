"""The corrupted-data stage: the -c.h5 file (local corruptions and CIFAR-C conversion), evaluation on a
corrupted set, and the clean vs. noisy consistency statistics (Table 1)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_arrays
from scipy import stats

from featdyn.composite import BandResult
from featdyn.config import ConfigError, effective_config, merge
from featdyn.consistency import (
    consistency_frame,
    kde_frame,
    memory_consistency,
    table1_markdown,
    welch_consistency_table,
)
from featdyn.corrupted_sets import CorruptedDataUnavailable, build_corrupted_file
from featdyn.corruptions import corrupt, images_to_float, images_to_uint8
from featdyn.data import (
    Arrays,
    corrupted_sets,
    evaluation_set,
    parse_corrupted_set,
    read_corrupted_set,
    tensor_data,
    write_dataset,
)
from featdyn.h5files import UnusableInputError
from featdyn.planning import consistency_figure_keys, consistency_keys, figure_eval_sets
from featdyn.plots.consistency import plot_consistency_kdes

NAMES, SEVERITIES = ["gaussian_noise", "gaussian_blur"], [2, 5]


def clean_file(tmp_path: Path, arrays: Arrays) -> Path:
    path = tmp_path / "clean.h5"
    write_dataset(arrays, path, {"source": arrays.source})
    return path


def build(tmp_path: Path, arrays: Arrays, seed: int, name: str = "c.h5", **kwargs) -> Path:
    path = tmp_path / name
    build_corrupted_file(clean_file(tmp_path, arrays), path, NAMES, SEVERITIES, seed, **kwargs)
    return path


def uint8_images(n: int = 12) -> Arrays:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2 * n, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 10, size=2 * n)
    return Arrays(x[:n], y[:n], x[n:], y[n:], 10, "digits")


# --- the -c.h5 file --------------------------------------------------------------------------------


def test_signal_file_layout_and_round_trip(tmp_path):
    arrays = tiny_arrays()
    path = build(tmp_path, arrays, seed=3)
    with h5py.File(path, "r") as f:
        assert set(f) == {"y", *NAMES} and set(f["gaussian_blur"]) == {"2", "5"}
        assert list(f.attrs["corruptions"]) == NAMES and list(f.attrs["severities"]) == SEVERITIES
        assert np.array_equal(f["y"][()], arrays.y_test)
    assert corrupted_sets(path) == [(n, s) for n in NAMES for s in SEVERITIES]
    x_test = torch.from_numpy(arrays.x_test)
    for name, severity in corrupted_sets(path):
        x, y = read_corrupted_set(path, name, severity)
        assert x.dtype == np.float32 and x.shape == arrays.x_test.shape
        assert np.array_equal(x, corrupt(x_test, name, severity, seed=3).numpy())
        assert np.array_equal(y, arrays.y_test)
    with pytest.raises(UnusableInputError, match=r"no corrupted set 'contrast-5' \(it has .*gaussian_blur-2"):
        read_corrupted_set(path, "contrast", 5)


def test_local_corruptions_are_deterministic_per_seed(tmp_path):
    arrays = tiny_arrays()
    first, again = build(tmp_path, arrays, 3, "a.h5"), build(tmp_path, arrays, 3, "b.h5")
    other = build(tmp_path, arrays, 4, "c.h5")
    for name, severity in corrupted_sets(first):
        x = read_corrupted_set(first, name, severity)[0]
        assert np.array_equal(x, read_corrupted_set(again, name, severity)[0])
        # the blur draws no random numbers; the noise does
        assert np.array_equal(x, read_corrupted_set(other, name, severity)[0]) == (name == "gaussian_blur")


def test_image_file_keeps_the_raw_uint8_nchw_format(tmp_path):
    arrays = uint8_images()
    path = build(tmp_path, arrays, seed=0)
    x, _ = read_corrupted_set(path, "gaussian_noise", 5)
    expected = images_to_uint8(
        corrupt(images_to_float(arrays.x_test, layout="NCHW"), "gaussian_noise", 5), layout="NCHW"
    )
    assert x.dtype == np.uint8 and x.shape == arrays.x_test.shape
    assert np.array_equal(x, expected.numpy()) and not np.array_equal(x, arrays.x_test)


def fake_cifar_c(folder: Path, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CIFAR-10-C release: n images per severity, rows [(s-1)n, sn) for severity s."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(rng.integers(0, 10, size=n), 5)
    folder.mkdir(parents=True)
    np.save(folder / "labels.npy", labels)
    for name in NAMES:
        np.save(folder / f"{name}.npy", images)
    return images, labels


def test_cifar_c_from_a_mirror_folder_is_converted_to_nchw(tmp_path):
    images, labels = fake_cifar_c(tmp_path / "mirror" / "CIFAR-10-C")
    n = len(labels) // 5
    arrays = Arrays(
        images[:n].transpose(0, 3, 1, 2),
        labels[:n],
        images[:n].transpose(0, 3, 1, 2),
        labels[:n],
        10,
        "cifar10",
    )
    path = build(
        tmp_path, arrays, seed=0, mirror_dirs=[str(tmp_path / "mirror")], cache_dir=tmp_path / "cache"
    )
    x, y = read_corrupted_set(path, "gaussian_blur", 5)
    assert np.array_equal(x, images[4 * n :].transpose(0, 3, 1, 2)) and np.array_equal(y, labels[:n])
    assert x.shape == (n, 3, 32, 32) and x.flags["C_CONTIGUOUS"]


def test_cifar_c_offline_error_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    arrays = Arrays(*(np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64)) * 2, 10, "cifar10")
    with pytest.raises(CorruptedDataUnavailable) as info:
        build(tmp_path, arrays, seed=0, mirror_dirs=[str(tmp_path / "mirror")], cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert str(tmp_path / "mirror" / "CIFAR-10-C") in message and "mirror_dirs" in message
    assert "zenodo.org/records/2535967" in message and "gaussian_blur.npy" in message


# --- evaluation on a corrupted set -----------------------------------------------------------------


def test_evaluation_set_reads_a_corrupted_set_normalised_like_test(tmp_path):
    arrays = tiny_arrays()
    path = build(tmp_path, arrays, seed=3)
    x, y = evaluation_set(tensor_data(arrays), arrays, "gaussian_blur-5", None, 0, corrupted_path=path)
    raw = read_corrupted_set(path, "gaussian_blur", 5)[0].astype(np.float64)
    train = arrays.x_train.astype(np.float64)
    expected = (raw - train.mean()) / train.std(ddof=1)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(y.numpy(), arrays.y_test) and y.dtype == torch.long
    assert (
        parse_corrupted_set("gaussian_blur-5") == ("gaussian_blur", 5) and parse_corrupted_set("test") is None
    )
    with pytest.raises(ValueError, match="-c.h5"):
        evaluation_set(tensor_data(arrays), arrays, "gaussian_blur-5", None, 0)
    with pytest.raises(ValueError, match="unknown evaluation set"):
        evaluation_set(tensor_data(arrays), arrays, "blurred", None, 0, corrupted_path=path)


# --- statistics ---------------------------------------------------------------------------------------


def band(per_sample_memory: np.ndarray, epochs: int = 6, window: int = 3) -> BandResult:
    """A composite result whose memory-side consistency at the last reference epoch, for every j, is
    `per_sample_memory` (anything else NaN)."""
    n = len(per_sample_memory)
    nan_band = np.full((2 * window + 1, epochs), np.nan)
    sample = np.full((2, 2, window + 1, n), np.nan)
    sample[-1, 0] = per_sample_memory
    return BandResult(
        epochs=np.arange(epochs) * 2,
        window=window,
        accuracy=nan_band,
        cross_entropy=nan_band,
        agreement=nan_band,
        consistency=nan_band,
        consistency_correct=nan_band,
        reference_epochs=np.array([4, 10]),
        sample_consistency=sample,
        sample_consistency_correct=sample,
    )


def synthetic_entries() -> list[tuple[dict, BandResult]]:
    rng = np.random.default_rng(5)
    entries = []
    for eval_set in ("test", "gaussian_blur-5"):
        for depth in (1, 2):
            for condition, a in (("clean", 12.0), ("noisy", 3.0)):
                values = np.minimum(1.0, rng.beta(a, 1.0, size=150) * 1.02)
                labels = {"pair": "p", "condition": condition, "run": f"r-{condition}"}
                entries.append(({**labels, "eval_set": eval_set, "depth": depth}, band(values)))
    return entries


def test_memory_consistency_takes_the_last_reference_epoch_and_window():
    values = np.linspace(0, 1, 7)
    out, t, start = memory_consistency(band(values), 2)
    assert np.array_equal(out, values) and (t, start) == (10, 6)
    with pytest.raises(ValueError, match="outside"):
        memory_consistency(band(values), 4)
    early = band(values)
    early.reference_epochs = np.array([2])
    with pytest.raises(ValueError, match="before the first analysed epoch"):
        memory_consistency(early, 2)


def test_welch_consistency_table_matches_scipy_and_shares():
    entries = synthetic_entries()
    frame = consistency_frame(entries, window=3)
    assert len(frame) == 8 * 150 and set(frame["epoch"]) == {10} and set(frame["start_epoch"]) == {4}
    table = welch_consistency_table(frame)
    assert list(zip(table["eval_set"], table["depth"])) == [
        ("test", 1),
        ("test", 2),
        ("gaussian_blur-5", 1),
        ("gaussian_blur-5", 2),
    ]
    values = {(e["eval_set"], e["depth"], e["condition"]): b.sample_consistency[-1, 0, 3] for e, b in entries}
    for row in table.itertuples():
        clean, noisy = values[row.eval_set, row.depth, "clean"], values[row.eval_set, row.depth, "noisy"]
        reference = stats.ttest_ind(clean, noisy, equal_var=False)
        assert row.t == pytest.approx(reference.statistic) and row.p == pytest.approx(reference.pvalue)
        assert row.share_clean == pytest.approx(np.mean(clean == 1.0))
        assert row.share_noisy == pytest.approx(np.mean(noisy == 1.0))
        assert row.share_clean > row.share_noisy and row.hedges_g > 0
    markdown = table1_markdown(table, 3, {"p": {"clean": "r-clean", "noisy": "r-noisy"}})
    caption, _, header, rule, *rows = markdown.splitlines()
    assert caption.startswith("**Table 1.**") and "W = 3" in caption and "t = 10, t − W = 4" in caption
    assert "r-clean vs. r-noisy" in caption and "memory side" in caption
    assert "| share clean | share noisy |" in header and len(rows) == 4
    assert all(f"{p:.2e}" in markdown for p in table["p"])


def test_kde_frame_has_one_density_per_group():
    frame = consistency_frame(synthetic_entries(), window=3)
    kde = kde_frame(frame)
    groups = kde.groupby(["pair", "eval_set", "depth", "condition"])
    assert groups.ngroups == 8
    for _, group in groups:
        assert np.trapezoid(group["density"], group["consistency"]) == pytest.approx(1.0, abs=1e-3)
        assert group["share_at_one"].nunique() == 1


def test_density_figure_wraps_panels_and_colours_any_condition():
    frame = consistency_frame(synthetic_entries(), window=3)
    frame["panel"] = frame["eval_set"] + "/" + frame["depth"].astype(str) + frame["condition"].str[0]
    frame["condition"] = frame["run"]
    fig = plot_consistency_kdes(frame, facet="panel", max_columns=3, title="runs")
    assert len(fig.axes) == 8 and fig.axes[0].get_gridspec().ncols == 3 and fig._suptitle.get_text() == "runs"
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 1 and labels[0].startswith("r-clean (share at 1.0:")
    plt.close(fig)


# --- config checks -----------------------------------------------------------------------------------


def config(**sections) -> dict:
    base = {
        "datasets": {"m": {"source": "mnist1d"}},
        "recipes": {"r": {"optimizer": "sgd", "lr": 0.1, "batch_size": 10}},
        "runs": {
            "clean": {"dataset": "m", "model": "resnet1d", "recipe": "r", "epochs": 2},
            "noisy": {"dataset": "m", "model": "resnet1d", "recipe": "r", "epochs": 2, "label_noise": 0.4},
        },
        "pairs": {"p": {"clean": "clean", "noisy": "noisy"}},
        "composite": {"depths": [1], "eval_sets": ["test"], "window": 3},
        "corruptions": {"default": ["gaussian_blur"], "severities": [5]},
        "stats": {
            "window": 2,
            "eval_sets": ["test", "gaussian_blur-5"],
            "figure_eval_set": None,
            "figure_corruptions": None,
        },
        "phase": {"dataset": "m"},
    }
    return effective_config(merge(base, sections))


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"corruptions": {"default": ["jpeg_compression"]}}, "corruptions.default"),
        ({"stats": {"eval_sets": ["gaussian_blur-3"]}}, "stats.eval_sets"),
        ({"stats": {"figure_eval_set": "fog-5"}}, "stats.figure_eval_set"),
        ({"stats": {"window": 4}}, "stats.window"),
        ({"stats": {"figure_corruptions": ["contrast"]}}, "stats.figure_corruptions"),
        ({"stats": {"figure_severity": 3}}, "stats.figure_severity"),
        ({"composite": {"depths": [1], "eval_sets": ["contrast-5"]}}, "composite.eval_sets"),
    ],
)
def test_config_checks_name_the_key_and_allowed_values(sections, key):
    config()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config(**sections)


def test_config_accepts_cifar_c_names_for_cifar_sources():
    config(
        datasets={"m": {"source": "cifar10"}},
        runs={"clean": {"model": "resnet20"}, "noisy": {"model": "resnet20"}},
        corruptions={"datasets": {"m": ["fog"]}, "severities": [5]},
        stats={"eval_sets": ["fog-5"]},
    )


def test_statistics_read_tested_sets_at_every_depth_and_figures_their_panels_at_the_figure_depth():
    plan = config(
        composite={"depths": [1, 2], "eval_sets": ["test"], "window": 3, "figure_depth": 2},
        corruptions={"default": ["gaussian_blur", "contrast"], "severities": [3, 5]},
        stats={"window": 2, "eval_sets": ["test", "gaussian_blur-5"], "figure_eval_set": "contrast-3"},
    )
    assert figure_eval_sets(plan, "p", "noisy") == ["test", "contrast-3"]
    assert figure_eval_sets(plan, "p", "corruptions") == ["gaussian_blur-5", "contrast-5"]
    tested = [("test", 1), ("test", 2), ("gaussian_blur-5", 1), ("gaussian_blur-5", 2)]
    assert consistency_keys(plan) == [
        ("p", side, side, e, d) for side in ("clean", "noisy") for e, d in tested
    ]
    panels = [("test", 2), ("contrast-3", 2)]
    assert consistency_figure_keys(plan, "p", "noisy") == [
        ("p", side, side, e, d) for side in ("clean", "noisy") for e, d in panels
    ]


def test_consistency_frame_columns_are_tidy():
    frame = consistency_frame(synthetic_entries()[:2], window=1)
    assert list(frame.columns) == [
        "pair",
        "condition",
        "run",
        "eval_set",
        "depth",
        "epoch",
        "start_epoch",
        "value",
    ]
    assert isinstance(frame, pd.DataFrame) and frame["value"].between(0, 1).all()
