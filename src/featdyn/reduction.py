"""Reduction of feature maps to vectors, shared by the SGD-noise and surrogate stages.

Conv feature maps are averaged over space (`gap`, one value per channel) or kept whole (`proj`); the
features of several samples are concatenated, and a vector longer than `p_max` is mapped by a fixed
seeded orthonormal projection (docs/definitions.md §4). The SGD-noise stage (`featdyn.sgd_noise`: one
vector per SGD step, its probes concatenated) calls `feature_reducer`; the surrogate stage
(`featdyn.surrogates`: one vector per input, §12) calls `sample_reducer`, the same map with one probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

Reduce = Literal["gap", "proj"]


def random_orthonormal_projection(dim: int, p: int, seed: int) -> torch.Tensor:
    """(dim, p) matrix with orthonormal columns, from a seeded CPU generator (device independent).

    Orthonormal columns map isotropic noise to isotropic noise, so the projection adds no anisotropy.
    """
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, p, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def feature_reducer(
    feature_shape: tuple[int, ...], n_probe: int, reduce: Reduce, p_max: int, projection_seed: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """A map from features (c, n_probe, *feature_shape) to (c, p), and its description.

    "gap" averages conv maps over their spatial dimensions (one value per channel); "proj" keeps them
    whole. The probe samples' features are then concatenated, probe-major (index = probe · f + j);
    when that vector is longer than `p_max` it is mapped by a fixed seeded orthonormal projection.
    """
    if reduce not in ("gap", "proj"):
        raise ValueError(f"reduce must be 'gap' or 'proj', got {reduce!r}")
    pooled = reduce == "gap" and len(feature_shape) > 1
    per_probe = feature_shape[0] if pooled else int(np.prod(feature_shape))
    raw_dim = n_probe * per_probe
    projection = random_orthonormal_projection(raw_dim, p_max, projection_seed) if raw_dim > p_max else None
    spatial_dims = tuple(range(3, 2 + len(feature_shape)))

    def reducer(features: torch.Tensor) -> torch.Tensor:
        if pooled:
            features = features.mean(dim=spatial_dims)
        flat = features.reshape(features.shape[0], raw_dim)
        return flat if projection is None else flat @ projection.to(flat.device, flat.dtype)

    info = {
        "reduce": reduce,
        "pooled": pooled,
        "projected": projection is not None,
        "projection_seed": projection_seed,
        "feature_shape": feature_shape,
        "features_per_probe": per_probe,
        "raw_dim": raw_dim,
        "p": raw_dim if projection is None else p_max,
        "layout": "probe-major concatenation"
        + (", then orthonormal projection" if projection is not None else ""),
    }
    return reducer, info


def sample_reducer(
    feature_shape: tuple[int, ...], reduce: Reduce = "gap", p_max: int = 512, projection_seed: int = 0
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """`feature_reducer` with one probe: a map from features (n, *feature_shape) to (n, p), one vector
    per input, and its description."""
    reducer, info = feature_reducer(feature_shape, 1, reduce, p_max, projection_seed)
    return (lambda features: reducer(features.unsqueeze(1))), info


def reduce_features(
    h: torch.Tensor, reduce: Reduce = "gap", p_max: int = 512, projection_seed: int = 0
) -> torch.Tensor:
    """Features h (n, *feature_shape) of n inputs as vectors (n, p), one per input (`sample_reducer`)."""
    reducer, _ = sample_reducer(tuple(h.shape[1:]), reduce, p_max, projection_seed)
    return reducer(h)
