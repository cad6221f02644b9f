"""Feature reduction shared by the SGD-noise and surrogate stages (docs/definitions.md §4, §12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featdyn import sgd_noise, surrogates
from featdyn.reduction import feature_reducer, random_orthonormal_projection, reduce_features, sample_reducer

pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_reduction(features: np.ndarray, reduce: str, p_max: int, seed: int) -> np.ndarray:
    """(c, n_probe, *shape) → (c, p): spatial mean of conv maps for `gap`, probe-major flattening, and
    the seeded orthonormal projection when longer than p_max, written out with numpy."""
    if reduce == "gap" and features.ndim > 3:
        features = features.mean(axis=tuple(range(3, features.ndim)))
    flat = features.reshape(features.shape[0], -1)
    if flat.shape[1] > p_max:
        flat = flat @ random_orthonormal_projection(flat.shape[1], p_max, seed).numpy()
    return flat


@pytest.mark.parametrize(
    ("shape", "reduce", "p_max"),
    [
        ((6, 5, 4), "gap", 512),
        ((6, 5, 4), "gap", 10),
        ((6, 5, 4), "proj", 32),
        ((6, 9), "gap", 512),
        ((6, 9), "proj", 20),
        ((12,), "gap", 512),
        ((12,), "proj", 7),
    ],
)
def test_reduction_against_numpy(shape: tuple[int, ...], reduce: str, p_max: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for n_probe in (1, 3):
        features = torch.randn(5, n_probe, *shape, generator=generator, dtype=torch.float64)
        reducer, info = feature_reducer(shape, n_probe, reduce, p_max, 4)
        expected = numpy_reduction(features.numpy(), reduce, p_max, 4)
        np.testing.assert_allclose(reducer(features).numpy(), expected, rtol=1e-12, atol=1e-12)
        assert info["p"] == expected.shape[1] and info["projected"] == (info["raw_dim"] > p_max)
    samples = torch.randn(5, *shape, generator=generator, dtype=torch.float64)
    one_probe, _ = feature_reducer(shape, 1, reduce, p_max, 4)
    torch.testing.assert_close(reduce_features(samples, reduce, p_max, 4), one_probe(samples[:, None]))
    by_sample, info = sample_reducer(shape, reduce, p_max, 4)
    torch.testing.assert_close(by_sample(samples), one_probe(samples[:, None]), rtol=0, atol=0)


def test_both_stages_use_the_one_reduction_module() -> None:
    """The SGD-noise and surrogate stages reduce features with the same functions, not copies."""
    assert sgd_noise.feature_reducer is feature_reducer
    assert surrogates.sample_reducer is sample_reducer
