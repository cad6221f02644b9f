"""Shape of a load curve (docs/definitions.md §9): curvature and per-layer loads, NumPy only.

A load curve is a value per layer l = 0 (input) … K along the last axis: D_l (`featdyn.separation`), the
distance to the target y − x_l of a spring–block chain (`featdyn.springblock`), or the regression RMSE R_l
(`featdyn.regression_load`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def curvature(curve: ArrayLike) -> float | np.ndarray:
    """Mean second difference along the last axis: < 0 concave (lazy), ≈ 0 linear, > 0 convex."""
    values = np.diff(np.asarray(curve, dtype=np.float64), n=2, axis=-1).mean(axis=-1)
    return float(values) if values.ndim == 0 else values


def curvature_of(curves: ArrayLike, include_output: bool) -> float | np.ndarray:
    """Curvature of load curves over the input and hidden layers, and the output layer if asked."""
    curves = np.asarray(curves, dtype=np.float64)
    return curvature(curves if include_output else curves[..., :-1])


def layer_loads(curve: ArrayLike) -> np.ndarray:
    """Per-layer load D_{l−1} − D_l, l = 1 … K, along the last axis."""
    return -np.diff(np.asarray(curve, dtype=np.float64), axis=-1)
