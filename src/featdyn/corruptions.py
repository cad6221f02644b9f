"""Corruption transforms (docs/definitions.md §8): local corruptions for any dataset, CIFAR-10/100-C reading.

Local corruptions
-----------------
Two kinds of data are supported, told apart by the number of dimensions:

- ``"image"``: float tensors (N, C, H, W) with values in [0, 1] (see `images_to_float`); every output is
  clipped to [0, 1].
- ``"signal"``: float tensors (N, L), e.g. MNIST-1D, real-valued and roughly standardised, so not bounded.
  Scales are taken per sample (its mean, std, minimum and maximum), which keeps the result of one sample
  independent of the rest of the batch. ``shot_noise`` is skipped because Poisson noise needs
  non-negative intensities, ``jpeg_compression`` because JPEG is a 2-D image codec.

Each corruption has five severities; its parameter per severity is given beside its entry in
`CORRUPTIONS`. The image parameters are those of Hendrycks & Dietterich's CIFAR-10-C
(``make_cifar_c.py``), with three simplifications: brightness shifts the HSV value channel exactly but
without the colour-space round trip, defocus blur uses one anti-aliased disk kernel instead of a disk
followed by a Gaussian, and pixelate resamples with exact area weights (see `_pixelate`). Signals are
scaled by their own std, so the signal brightness shifts are the CIFAR ones divided by 0.25 (a typical
CIFAR pixel std) and the noise levels span a similar range. Signal levels are spaced so that the
damage (PSNR against the clean data) grows with severity at MNIST-1D's length L = 40: pixelation at
integer cell widths hurts more than at slightly wider non-integer ones, and with few points per
sample impulse noise needs wide steps in count.

Randomness is deterministic: `corrupt` draws from a generator seeded with `derived_seed(seed, name,
severity)`, so each (name, severity) pair is reproducible on its own, whatever the order of generation.
Results are reproducible per device (CPU and CUDA generators differ).

CIFAR-10-C / CIFAR-100-C
------------------------
`read_cifar_c` memory-maps ``<name>.npy`` (N·5, 32, 32, 3) uint8, rows ``[(s−1)·N, s·N)`` holding
severity s, and ``labels.npy`` from an extracted release (Zenodo records 2535967 and 3555552).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Kind = Literal["image", "signal"]
Layout = Literal["NHWC", "NCHW"]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

CIFAR_C_BENCHMARK: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
CIFAR_C_EXTRA: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CIFAR_C_ALL: tuple[str, ...] = CIFAR_C_BENCHMARK + CIFAR_C_EXTRA


@dataclass(frozen=True)
class CifarCRelease:
    """A published CIFAR-C release: its folder name, download URL (Zenodo record) and md5."""

    folder: str
    url: str
    md5: str


CIFAR_C_RELEASES = {
    "cifar10": CifarCRelease(
        "CIFAR-10-C",
        "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
        "56bf5dcef84df0e2308c6dcbcbbd8499",
    ),
    "cifar100": CifarCRelease(
        "CIFAR-100-C",
        "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar",
        "11f0ed0f1191edbf9fa23466ae6021d3",
    ),
}


@dataclass(frozen=True)
class Corruption:
    """A corruption `apply(x, level, generator)` and its `levels`, the parameter of severities 1..5.

    `apply` receives x as (N, C, *spatial): images as they are, signals as (N, 1, L).
    """

    apply: Callable[[Tensor, float, torch.Generator], Tensor]
    levels: tuple[float, ...]

    def __call__(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        return self.apply(x, self.levels[severity - 1], generator)


# --- shared building blocks; x is (N, C, *spatial) ----------------------------------------------------


def _spatial_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def _uniform(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _normal(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _sample_std(x: Tensor) -> Tensor:
    return x.std(dim=(1, *_spatial_dims(x)), keepdim=True)


def _filter(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel with a symmetric 1-D or 2-D kernel, replicating the borders."""
    ndim = kernel.ndim
    flat = x.reshape(-1, 1, *x.shape[-ndim:])
    pad = kernel.shape[-1] // 2
    padded = F.pad(flat, (pad,) * (2 * ndim), mode="replicate")
    convolve = F.conv1d if ndim == 1 else F.conv2d
    return convolve(padded, kernel[None, None].to(x)).reshape(x.shape)


def _along_each_axis(x: Tensor, operator: Callable[[int], Tensor]) -> Tensor:
    """Multiply every spatial axis, of length n, by the (n, n) matrix `operator(n)`.

    Separable linear filters done this way are much faster on CPU than single-channel convolutions.
    """
    for dim in _spatial_dims(x):
        x = (x.movedim(dim, -1) @ operator(x.shape[dim]).to(x)).movedim(-1, dim)
    return x


def _convolution_matrix(kernel: Tensor, size: int) -> Tensor:
    """(size, size) matrix M such that x @ M convolves x with the symmetric 1-D `kernel`, replicating
    the border values however wide the kernel."""
    radius = len(kernel) // 2
    output = torch.arange(size)
    source = (output[None, :] + torch.arange(-radius, radius + 1)[:, None]).clamp(0, size - 1)
    matrix = torch.zeros(size, size, dtype=kernel.dtype)
    return matrix.index_put_(
        (source, output.expand_as(source)), kernel[:, None].expand_as(source), accumulate=True
    )


def _offsets(radius: int, ndim: int) -> Tensor:
    """Distance of each tap of a (2·radius+1)^ndim kernel from its centre."""
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    return d.abs() if ndim == 1 else torch.hypot(d[:, None], d[None, :])


def _gaussian_kernel(sigma: float) -> Tensor:
    distance = _offsets(math.ceil(3 * sigma), ndim=1)
    kernel = torch.exp(-0.5 * (distance / sigma) ** 2)
    return kernel / kernel.sum()


def _disk_kernel(radius: float, ndim: int) -> Tensor:
    """Uniform disk (1-D: box) whose edge taps are weighted by how far the radius reaches into them."""
    distance = _offsets(math.ceil(radius + 0.5), ndim)
    kernel = (radius + 0.5 - distance).clamp(0, 1)
    return kernel / kernel.sum()


def _gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    kernel = _gaussian_kernel(sigma)
    return _along_each_axis(x, lambda size: _convolution_matrix(kernel, size))


def _defocus_blur(x: Tensor, radius: float, generator: torch.Generator) -> Tensor:
    return _filter(x, _disk_kernel(radius, x.ndim - 2))


def _contrast(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    """Scale the deviations from the per-sample, per-channel mean by `factor`."""
    mean = x.mean(dim=_spatial_dims(x), keepdim=True)
    return (x - mean) * factor + mean


def _area_resampling(size: int, cells: int) -> Tensor:
    """(size, size) matrix that averages `size` unit pixels into `cells` equal cells and spreads the
    cell means back, each pixel taking the cells it overlaps in proportion to the overlap."""
    width = size / cells
    cell_start = torch.arange(cells, dtype=torch.float64)[:, None] * width
    pixel_start = torch.arange(size, dtype=torch.float64)[None, :]
    overlap = (
        torch.minimum(cell_start + width, pixel_start + 1) - torch.maximum(cell_start, pixel_start)
    ).clamp(min=0)
    return overlap.T @ overlap / width


def _pixelate(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Average over cells `1/fraction` pixels wide along every spatial axis, then spread back.

    Unlike box-downsampling followed by nearest upsampling, exact area weights do not shift the
    content at non-integer ratios, so the damage grows steadily as the cells widen.
    """
    return _along_each_axis(x, lambda size: _area_resampling(size, max(1, round(size * fraction))))


# --- image corruptions ----------------------------------------------------------------------------------


def _image_gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    return x + std * _normal(x, generator)


def _image_shot_noise(x: Tensor, photons: float, generator: torch.Generator) -> Tensor:
    return torch.poisson(x.clamp(min=0) * photons, generator=generator) / photons


def _image_impulse_noise(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Set each value with probability `fraction` to 0 or 1, with equal odds (salt and pepper)."""
    hit = _uniform(x, generator) < fraction
    salt = _uniform(x, generator) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _image_brightness(x: Tensor, shift: float, generator: torch.Generator) -> Tensor:
    """Add `shift` to the HSV value (channel maximum), keeping hue and saturation."""
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(max=1)
    scaled = x * (new_value / value.clamp(min=torch.finfo(x.dtype).tiny))
    return torch.where(value > 0, scaled, new_value)


def _image_jpeg(x: Tensor, quality: float, generator: torch.Generator) -> Tensor:
    """Encode and decode every image with Pillow's JPEG codec (as CIFAR-10-C was made)."""
    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_compression needs 1 or 3 channels, got {x.shape[1]}")
    images = images_to_uint8(x.cpu(), layout="NHWC").numpy()
    decoded = np.stack([_jpeg_round_trip(image, int(quality)) for image in images])
    return images_to_float(decoded).to(device=x.device, dtype=x.dtype)


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Pass one (H, W, C) uint8 image, C = 1 or 3, through JPEG; same shape out."""
    grey_or_rgb = image.squeeze(-1) if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(grey_or_rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).reshape(image.shape)


# --- signal corruptions ---------------------------------------------------------------------------------


def _signal_gaussian_noise(x: Tensor, relative_std: float, generator: torch.Generator) -> Tensor:
    return x + relative_std * _sample_std(x) * _normal(x, generator)


def _signal_impulse_noise(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Set round(fraction·L) points of every sample (at least one) to its minimum or maximum."""
    flat = x.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    picked = _uniform(flat, generator).argsort(dim=1)[:, :count]
    hit = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, picked, True)
    salt = _uniform(flat, generator) < 0.5
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    return torch.where(hit, torch.where(salt, high, low), flat).reshape(x.shape)


def _signal_brightness(x: Tensor, relative_shift: float, generator: torch.Generator) -> Tensor:
    return x + relative_shift * _sample_std(x)


CORRUPTIONS: dict[str, dict[str, Corruption]] = {
    "image": {
        # std of additive Gaussian noise, in [0, 1] intensity units
        "gaussian_noise": Corruption(_image_gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
        # photons at full intensity: x ← Poisson(x·λ)/λ
        "shot_noise": Corruption(_image_shot_noise, (500, 250, 100, 75, 50)),
        # fraction of values set to 0 or 1 (salt and pepper, equal odds)
        "impulse_noise": Corruption(_image_impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
        # Gaussian sigma in pixels (kernel truncated at 3 sigma)
        "gaussian_blur": Corruption(_gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
        # anti-aliased disk radius in pixels
        "defocus_blur": Corruption(_defocus_blur, (0.6, 0.8, 1.0, 1.25, 1.5)),
        # factor on deviations from the per-image, per-channel mean
        "contrast": Corruption(_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
        # shift of the HSV value channel
        "brightness": Corruption(_image_brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
        # cells per side as a fraction of the side
        "pixelate": Corruption(_pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
        # JPEG quality
        "jpeg_compression": Corruption(_image_jpeg, (80, 65, 58, 50, 40)),
    },
    "signal": {
        # std of additive Gaussian noise, in units of the sample's std
        "gaussian_noise": Corruption(_signal_gaussian_noise, (0.1, 0.2, 0.3, 0.4, 0.5)),
        # fraction of points set to the sample's minimum or maximum (equal odds); 1, 2, 4, 6, 8 of L = 40
        "impulse_noise": Corruption(_signal_impulse_noise, (0.025, 0.05, 0.1, 0.15, 0.2)),
        # Gaussian sigma in samples (kernel truncated at 3 sigma)
        "gaussian_blur": Corruption(_gaussian_blur, (0.5, 0.75, 1.0, 1.5, 2.0)),
        # half-width of an anti-aliased box kernel, in samples
        "defocus_blur": Corruption(_defocus_blur, (0.75, 1.0, 1.5, 2.0, 3.0)),
        # factor on deviations from the sample's mean
        "contrast": Corruption(_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
        # additive offset, in units of the sample's std
        "brightness": Corruption(_signal_brightness, (0.2, 0.4, 0.6, 0.8, 1.2)),
        # cells as a fraction of the length; 38, 34, 30, 24, 20 cells for L = 40
        "pixelate": Corruption(_pixelate, (0.95, 0.85, 0.75, 0.6, 0.5)),
    },
}


# --- public API -----------------------------------------------------------------------------------------


def data_kind(x: Tensor) -> Kind:
    """``"signal"`` for (N, L) tensors, ``"image"`` for (N, C, H, W) tensors."""
    if x.ndim == 2:
        return "signal"
    if x.ndim == 4:
        return "image"
    raise ValueError(f"expected signals (N, L) or images (N, C, H, W), got shape {tuple(x.shape)}")


def corruption_names(kind: Kind) -> list[str]:
    """Names of the local corruptions available for `kind`."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {sorted(CORRUPTIONS)}")
    return list(CORRUPTIONS[kind])


def derived_seed(seed: int, name: str, severity: int) -> int:
    """A 64-bit seed of its own for each (seed, corruption, severity), stable across runs."""
    digest = hashlib.sha256(f"{seed}/{name}/{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Corrupt a batch of images (N, C, H, W) in [0, 1] or signals (N, L); same shape and dtype out."""
    kind = data_kind(x)
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {x.dtype}")
    if name not in CORRUPTIONS[kind]:
        raise ValueError(f"unknown {kind} corruption {name!r}; expected one of {corruption_names(kind)}")
    _check_severities([severity])
    generator = torch.Generator(device=x.device).manual_seed(derived_seed(seed, name, severity))
    corruption = CORRUPTIONS[kind][name]
    if kind == "signal":
        return corruption(x[:, None], severity, generator)[:, 0]
    return corruption(x, severity, generator).clamp(0, 1)


def corrupt_all(
    x: Tensor, names: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES, seed: int = 0
) -> Iterator[tuple[tuple[str, int], Tensor]]:
    """Yield ((name, severity), corrupted x) for every pair; `names` defaults to all of x's kind."""
    for name in corruption_names(data_kind(x)) if names is None else names:
        for severity in severities:
            yield (name, severity), corrupt(x, name, severity, seed)


def images_to_float(images: np.ndarray | Tensor, layout: Layout = "NHWC") -> Tensor:
    """uint8 images in `layout` → float32 tensor (N, C, H, W) in [0, 1]."""
    tensor = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:
        raise ValueError(f"expected 4-D uint8 images, got {tensor.dtype} of shape {tuple(tensor.shape)}")
    if layout == "NHWC":
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.float().div(255).contiguous()


def images_to_uint8(x: Tensor, layout: Layout = "NHWC") -> Tensor:
    """Float images (N, C, H, W) in [0, 1] → uint8 tensor in `layout`, rounded to the nearest level."""
    images = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous() if layout == "NHWC" else images


def psnr(clean: np.ndarray | Tensor, corrupted: np.ndarray | Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB over all elements (inf when identical)."""
    mse = (_float64(corrupted) - _float64(clean)).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def read_cifar_c(
    folder: str | Path, names: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Memory-map CIFAR-10-C / CIFAR-100-C: (name, severity) → (images (n, 32, 32, 3) uint8, labels (n,)).

    `names` defaults to the 15 benchmark corruptions (`CIFAR_C_BENCHMARK`); pass `CIFAR_C_ALL` for the
    extra four too. The rows per severity are the length of ``labels.npy`` divided by five.
    """
    folder = Path(folder)
    names = CIFAR_C_BENCHMARK if names is None else tuple(names)
    unknown = sorted(set(names) - set(CIFAR_C_ALL))
    if unknown:
        raise ValueError(f"unknown CIFAR-C corruptions {unknown}; expected some of {list(CIFAR_C_ALL)}")
    _check_severities(severities)
    _check_cifar_c_files(folder, [*names, "labels"])

    labels = np.load(folder / "labels.npy", mmap_mode="r")
    rows = _rows_per_severity(len(labels), folder / "labels.npy")
    data = {}
    for name in names:
        images = np.load(folder / f"{name}.npy", mmap_mode="r")
        if len(images) != len(labels):
            raise ValueError(f"{folder / name}.npy has {len(images)} rows but labels.npy has {len(labels)}")
        for severity in severities:
            block = slice((severity - 1) * rows, severity * rows)
            data[name, severity] = (images[block], labels[block])
    return data


def _float64(values: np.ndarray | Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().double()
    return torch.from_numpy(np.array(values, dtype=np.float64))


def _check_severities(severities: Sequence[int]) -> None:
    invalid = [s for s in severities if s not in SEVERITIES]
    if invalid:
        raise ValueError(f"severities must be among {SEVERITIES}, got {invalid}")


def _check_cifar_c_files(folder: Path, stems: Sequence[str]) -> None:
    missing = [f"{stem}.npy" for stem in stems if not (folder / f"{stem}.npy").is_file()]
    if missing:
        sources = ", ".join(f"{r.folder} from {r.url}" for r in CIFAR_C_RELEASES.values())
        raise FileNotFoundError(
            f"CIFAR-C folder {folder} lacks {len(missing)} file(s): {', '.join(missing)}. "
            f"Download and extract the release ({sources}) so that the folder holds <corruption>.npy "
            "and labels.npy."
        )


def _rows_per_severity(total_rows: int, path: Path) -> int:
    if total_rows % len(SEVERITIES):
        raise ValueError(f"{path} has {total_rows} rows, not a multiple of {len(SEVERITIES)} severities")
    return total_rows // len(SEVERITIES)
