"""Tests for featdyn.corruptions: local corruptions, conversions, PSNR and the CIFAR-C reader."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featdyn.corruptions import (
    CIFAR_C_ALL,
    CIFAR_C_BENCHMARK,
    CIFAR_C_EXTRA,
    CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corrupt_all,
    corruption_names,
    images_to_float,
    images_to_uint8,
    psnr,
    read_cifar_c,
)

STOCHASTIC = {"gaussian_noise", "shot_noise", "impulse_noise"}
ALL_CORRUPTIONS = [(kind, name) for kind in CORRUPTIONS for name in CORRUPTIONS[kind]]


def smooth_images() -> torch.Tensor:
    """8 random but smooth RGB images (8, 3, 32, 32) in [0, 1]: bicubic upsampling of 8×8 noise."""
    coarse = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)


def smooth_signals() -> torch.Tensor:
    """16 random but smooth standardised signals (16, 40): linear upsampling of 10-point noise."""
    coarse = torch.randn(16, 1, 10, generator=torch.Generator().manual_seed(0))
    signals = F.interpolate(coarse, size=40, mode="linear", align_corners=False)[:, 0]
    return (signals - signals.mean()) / signals.std()


def clean_data(kind: str) -> torch.Tensor:
    return smooth_images() if kind == "image" else smooth_signals()


def data_range(x: torch.Tensor) -> float:
    return float(x.max() - x.min())


def test_corruption_lists_per_kind() -> None:
    shared = {"gaussian_noise", "impulse_noise", "gaussian_blur", "defocus_blur", "contrast", "brightness"}
    assert set(corruption_names("signal")) == shared | {"pixelate"}
    assert set(corruption_names("image")) == shared | {"pixelate", "shot_noise", "jpeg_compression"}
    with pytest.raises(ValueError, match="unknown data kind"):
        corruption_names("video")


@pytest.mark.parametrize(("kind", "name"), ALL_CORRUPTIONS)
def test_every_corruption_has_five_levels(kind: str, name: str) -> None:
    assert len(CORRUPTIONS[kind][name].levels) == len(SEVERITIES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("kind", "name"), ALL_CORRUPTIONS)
def test_shape_dtype_and_image_range_are_preserved(kind: str, name: str, dtype: torch.dtype) -> None:
    x = clean_data(kind).to(dtype)
    y = corrupt(x, name, severity=5, seed=1)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    if kind == "image":
        assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize(("kind", "name"), ALL_CORRUPTIONS)
def test_same_seed_gives_identical_output(kind: str, name: str) -> None:
    x = clean_data(kind)
    assert torch.equal(corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=7))


@pytest.mark.parametrize(("kind", "name"), ALL_CORRUPTIONS)
def test_seed_changes_only_stochastic_corruptions(kind: str, name: str) -> None:
    x = clean_data(kind)
    same = torch.equal(corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=8))
    assert same is (name not in STOCHASTIC)


@pytest.mark.parametrize(("kind", "name"), ALL_CORRUPTIONS)
def test_damage_grows_with_severity(kind: str, name: str) -> None:
    x = clean_data(kind)
    scores = [psnr(x, corrupt(x, name, severity, seed=0), data_range(x)) for severity in SEVERITIES]
    assert all(later < earlier for earlier, later in pairwise(scores)), scores


def test_corrupt_all_matches_corrupt_whatever_the_order() -> None:
    x = smooth_images()
    names = ["impulse_noise", "gaussian_noise"]
    forward = dict(corrupt_all(x, names, severities=(1, 4), seed=3))
    backward = dict(corrupt_all(x, names[::-1], severities=(4, 1), seed=3))
    assert list(forward) == [
        ("impulse_noise", 1),
        ("impulse_noise", 4),
        ("gaussian_noise", 1),
        ("gaussian_noise", 4),
    ]
    for key, corrupted in forward.items():
        assert torch.equal(corrupted, backward[key])
        assert torch.equal(corrupted, corrupt(x, *key, seed=3))


def test_corrupt_all_defaults_to_every_corruption_and_severity() -> None:
    keys = [key for key, _ in corrupt_all(smooth_signals())]
    assert keys == [(name, s) for name in corruption_names("signal") for s in SEVERITIES]


def test_signal_impulse_noise_hits_a_fixed_count_with_the_extremes() -> None:
    x = smooth_signals()
    y = corrupt(x, "impulse_noise", severity=5, seed=0)
    hit = y != x
    assert (hit.sum(dim=1) <= 8).all() and hit.sum() > 8 * len(x) // 2
    low, high = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    assert ((y == low) | (y == high))[hit].all()


def test_signal_contrast_keeps_the_mean_and_brightness_shifts_by_the_std() -> None:
    x = smooth_signals()
    contrast = corrupt(x, "contrast", severity=2)
    torch.testing.assert_close(contrast.mean(dim=1), x.mean(dim=1))
    torch.testing.assert_close(
        contrast - contrast.mean(dim=1, keepdim=True), 0.5 * (x - x.mean(dim=1, keepdim=True))
    )
    shift = corrupt(x, "brightness", severity=5) - x
    torch.testing.assert_close(shift, 1.2 * x.std(dim=1, keepdim=True).expand_as(x))


def test_image_brightness_raises_the_value_and_keeps_grey_pixels_grey() -> None:
    grey = torch.full((1, 3, 4, 4), 0.5)
    torch.testing.assert_close(corrupt(grey, "brightness", severity=5), torch.full_like(grey, 0.8))
    black = torch.zeros(1, 3, 2, 2)
    torch.testing.assert_close(corrupt(black, "brightness", severity=1), torch.full_like(black, 0.05))


@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (2, 5)])
@pytest.mark.parametrize("name", ["gaussian_blur", "defocus_blur", "pixelate", "contrast"])
def test_linear_corruptions_leave_constant_data_unchanged(name: str, shape: tuple[int, ...]) -> None:
    constant = torch.full(shape, 0.3, dtype=torch.float64)
    torch.testing.assert_close(corrupt(constant, name, severity=5), constant)


def test_gaussian_blur_spreads_an_impulse_symmetrically() -> None:
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1
    blurred = corrupt(impulse, "gaussian_blur", severity=5)[0, 0]
    torch.testing.assert_close(blurred.sum(), torch.tensor(1.0))
    torch.testing.assert_close(blurred, blurred.T)
    torch.testing.assert_close(blurred, blurred.flip(0))
    assert blurred[7, 7] == blurred.max()
    assert blurred[7, 10] > 0 and blurred[7, 11] == 0  # sigma 1, truncated at 3 sigma


def test_pixelate_at_an_integer_ratio_averages_blocks() -> None:
    x = torch.arange(40.0)[None]
    y = corrupt(x, "pixelate", severity=5)
    torch.testing.assert_close(y, (torch.arange(0.0, 40.0, 2) + 0.5).repeat_interleave(2)[None])


def test_jpeg_works_on_grayscale_and_rejects_other_channel_counts() -> None:
    x = smooth_images()
    assert corrupt(x[:, :1], "jpeg_compression", 1).shape == (8, 1, 32, 32)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        corrupt(x[:, :2], "jpeg_compression", 1)


@pytest.mark.parametrize(
    ("x", "name", "severity", "error", "message"),
    [
        (torch.zeros(2, 3, 4), "contrast", 1, ValueError, "expected signals"),
        (torch.zeros(2, 40), "shot_noise", 1, ValueError, "unknown signal corruption"),
        (torch.zeros(2, 40), "contrast", 6, ValueError, "severities must be among"),
        (torch.zeros(2, 40, dtype=torch.int64), "contrast", 1, TypeError, "floating-point"),
    ],
)
def test_corrupt_rejects_bad_input(
    x: torch.Tensor, name: str, severity: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        corrupt(x, name, severity)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_uint8_conversion_round_trips(layout: str) -> None:
    rng = np.random.default_rng(0)
    shape = (2, 5, 6, 3) if layout == "NHWC" else (2, 3, 5, 6)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    x = images_to_float(images, layout=layout)
    assert x.shape == (2, 3, 5, 6) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(images_to_uint8(x, layout=layout).numpy(), images)
    with pytest.raises(ValueError, match="uint8"):
        images_to_float(images.astype(np.float32), layout=layout)


def test_psnr() -> None:
    clean = torch.zeros(4, 10)
    assert psnr(clean, clean + 0.1, data_range=1.0) == pytest.approx(20.0)
    assert psnr(clean.numpy(), clean.numpy(), data_range=1.0) == math.inf


def test_cifar_c_name_lists() -> None:
    assert len(CIFAR_C_BENCHMARK) == 15 and len(CIFAR_C_EXTRA) == 4
    assert set(CIFAR_C_EXTRA) == {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert len(set(CIFAR_C_ALL)) == 19


ROWS_PER_SEVERITY = 3


def write_cifar_c(folder: Path, names: list[str], rows_per_severity: int = ROWS_PER_SEVERITY) -> None:
    """Fabricate a CIFAR-C folder with the real layout; image row i is filled with the value i."""
    total = 5 * rows_per_severity
    images = np.broadcast_to(np.arange(total, dtype=np.uint8)[:, None, None, None], (total, 32, 32, 3))
    for name in names:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(images))
    np.save(folder / "labels.npy", np.arange(total, dtype=np.int64) % 10)


def test_read_cifar_c_returns_the_rows_of_each_severity(tmp_path: Path) -> None:
    write_cifar_c(tmp_path, ["fog", "saturate"])
    data = read_cifar_c(tmp_path, names=["fog", "saturate"], severities=(2, 5))
    assert sorted(data) == [("fog", 2), ("fog", 5), ("saturate", 2), ("saturate", 5)]
    for (_, severity), (images, labels) in data.items():
        rows = np.arange((severity - 1) * ROWS_PER_SEVERITY, severity * ROWS_PER_SEVERITY)
        assert images.shape == (ROWS_PER_SEVERITY, 32, 32, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[:, 0, 0, 0], rows)
        np.testing.assert_array_equal(labels, rows % 10)
        assert isinstance(images.base, np.memmap) or isinstance(images, np.memmap)


def test_read_cifar_c_defaults_to_the_benchmark_corruptions(tmp_path: Path) -> None:
    write_cifar_c(tmp_path, list(CIFAR_C_BENCHMARK))
    data = read_cifar_c(tmp_path)
    assert sorted(data) == sorted((name, s) for name in CIFAR_C_BENCHMARK for s in SEVERITIES)


def test_read_cifar_c_lists_missing_files_and_their_source(tmp_path: Path) -> None:
    write_cifar_c(tmp_path, ["fog"])
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError) as excinfo:
        read_cifar_c(tmp_path, names=["fog", "snow", "frost"])
    message = str(excinfo.value)
    assert "3 file(s): snow.npy, frost.npy, labels.npy" in message
    assert "fog.npy" not in message
    assert "2535967" in message and "3555552" in message


def test_read_cifar_c_rejects_unknown_names_and_inconsistent_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CIFAR-C corruptions"):
        read_cifar_c(tmp_path, names=["rain"])
    write_cifar_c(tmp_path, ["fog"])
    np.save(tmp_path / "snow.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="has 7 rows but labels.npy has 15"):
        read_cifar_c(tmp_path, names=["snow"])
    np.save(tmp_path / "labels.npy", np.zeros(7, dtype=np.int64))
    with pytest.raises(ValueError, match="not a multiple of 5"):
        read_cifar_c(tmp_path, names=["snow"])
